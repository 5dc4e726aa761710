"""Model names that look like another name are refused (library.validate_model_name, the one check)."""

import pytest

from ddsp_device.errors import ModelError
from ddsp_device.library import validate_model_name


@pytest.mark.parametrize("name, code", [
    ("Vio\u200blin", "U+200B"),  # zero-width space
    ("Violin\u200d", "U+200D"),  # zero-width joiner
    ("\u2060Violin", "U+2060"),  # word joiner
    ("Violin\u202enilpmet", "U+202E"),  # right-to-left override
    ("Vio\u2066lin\u2069", "U+2066"),  # left-to-right isolate
    ("Vio\u200flin", "U+200F"),  # right-to-left mark
    ("\ufeffViolin", "U+FEFF"),  # byte order mark
    ("Vio\u00adlin", "U+00AD"),  # soft hyphen
    ("Vio\u2028lin", "U+2028"),  # line separator
    ("Vio\ue000lin", "U+E000"),  # private use
])
def test_invisible_and_bidi_characters_are_refused(name, code):
    with pytest.raises(ModelError) as caught:
        validate_model_name(name)
    message = str(caught.value)
    assert code in message and "invisible or text-direction" in message
    assert all(ch.isprintable() for ch in message)  # the message itself shows what is there


@pytest.mark.parametrize("name", ["Flöte", "Скрипка", "ヴァイオリン", "כינור", "Violin 2"])
def test_visible_names_in_any_script_are_fine(name):
    assert validate_model_name(name) == name
