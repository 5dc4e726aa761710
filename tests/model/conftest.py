"""Shared paths and helpers for the model-runtime tests (``tests/model``)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "models"


@pytest.fixture(scope="session")
def paths() -> SimpleNamespace:
    """The committed fixture files (see ``tests/fixtures/make_models.py``)."""
    return SimpleNamespace(
        root=ROOT,
        fixtures=FIXTURES,
        demo=ROOT / "models" / "TestFixture.tflite",
        float_window=FIXTURES / "float_window.tflite",
        state=FIXTURES / "state.tflite",
        reference=FIXTURES / "reference_outputs.npz",
    )


@pytest.fixture(scope="session")
def reference(paths) -> dict[str, np.ndarray]:
    with np.load(paths.reference) as data:
        return {key: data[key] for key in data.files}


def _flatbuffer_part(data: bytes) -> bytes:
    """``data`` without its appended zip (the bytes before the zip's first member)."""
    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        return data
    with zipfile.ZipFile(buffer) as archive:
        start = min(info.header_offset for info in archive.infolist())
    return data[:start]


def _with_raw_metadata(tflite_bytes: bytes, member_bytes: bytes, member: str = "metadata.json") -> bytes:
    """Append a zip holding ``member_bytes`` unchecked (``append_metadata`` refuses bad metadata)."""
    buffer = io.BytesIO(tflite_bytes)
    with zipfile.ZipFile(buffer, mode="a") as archive:
        archive.writestr(member, member_bytes)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def flatbuffer_part():
    return _flatbuffer_part


@pytest.fixture(scope="session")
def with_raw_metadata():
    return _with_raw_metadata
