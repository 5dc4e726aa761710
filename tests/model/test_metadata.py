"""Metadata: the zip holding metadata.json appended to a .tflite (reader, writer, refusals)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from ddsp_device.errors import ModelError
from ddsp_device.model import append_metadata, load_model, read_metadata


@pytest.fixture(scope="module")
def bare_bytes(paths) -> bytes:
    return paths.float_window.read_bytes()


def test_read_demo_metadata(paths):
    metadata = read_metadata(paths.demo)
    assert metadata["name"] == "TestFixture"
    assert metadata["frame_rate_hz"] == 375.0
    assert metadata["licence"] == "Apache-2.0"
    assert metadata["window_frames"] == 8


def test_bare_file_has_no_metadata(paths):
    assert read_metadata(paths.float_window) == {}


def test_read_metadata_of_missing_file(tmp_path):
    with pytest.raises(ModelError, match="cannot read model file"):
        read_metadata(tmp_path / "missing.tflite")


def test_append_round_trip_and_determinism(tmp_path, bare_bytes):
    metadata = {"name": "Violin", "frame_rate_hz": 375.0, "sample_rate_hz": 48000, "trained_steps": 1200}
    data = append_metadata(bare_bytes, metadata)
    assert data.startswith(bare_bytes)
    assert data == append_metadata(bare_bytes, dict(reversed(list(metadata.items()))))
    path = tmp_path / "violin.tflite"
    path.write_bytes(data)
    assert read_metadata(path) == metadata
    with zipfile.ZipFile(path) as archive:  # any zip reader finds it
        assert archive.namelist() == ["metadata.json"]
        assert json.loads(archive.read("metadata.json")) == metadata


@pytest.mark.runtime
def test_model_with_appended_metadata_loads(tmp_path, bare_bytes):
    path = tmp_path / "violin.tflite"
    path.write_bytes(append_metadata(bare_bytes, {"name": "Violin", "frame_rate_hz": 375.0, "trained_steps": 3}))
    with load_model(path) as model:
        assert model.info.metadata_source == "metadata.json"
        assert (model.info.name, model.info.frame_rate_hz) == ("Violin", 375.0)
        assert model.info.extra == {"trained_steps": 3}
        model.step(220.0, 0.5)
        assert model.harmonic_amps[0] > 0


def test_metadata_found_behind_prepended_data(tmp_path, bare_bytes):
    """zipfile finds an archive whose offsets do not count the bytes before it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"name": "Relative"}))
    path = tmp_path / "relative.tflite"
    path.write_bytes(bare_bytes + buffer.getvalue())
    assert read_metadata(path) == {"name": "Relative"}


def test_append_refuses_non_tflite_and_double_append(bare_bytes):
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        append_metadata(b"not a model at all", {})
    once = append_metadata(bare_bytes, {"name": "x"})
    with pytest.raises(ModelError, match="already has an appended zip"):
        append_metadata(once, {"name": "y"})


def test_append_validates(bare_bytes):
    with pytest.raises(ModelError, match="frame_rate_hz: must be a number"):
        append_metadata(bare_bytes, {"frame_rate_hz": "fast"})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "metadata.json is not valid JSON"),
        (b"\xff\xfe", "metadata.json is not valid JSON"),
        (b"[1, 2, 3]", "metadata.json: must hold a JSON object, not list"),
        (b'{"frame_rate_hz": "fast"}', 'frame_rate_hz: must be a number, not "fast"'),
        (b'{"sample_rate_hz": 44100.5}', "sample_rate_hz: must be an integer, not 44100.5"),
        (b'{"sample_rate_hz": true}', "sample_rate_hz: must be an integer, not true"),
        (b'{"name": 3}', "name: must be a string, not 3"),
        (b'{"licence": null}', "licence: must be a string, not null"),
        (b'{"window_frames": 0}', "window_frames: must be > 0, not 0"),
        (b'{"frame_rate_hz": -375}', "frame_rate_hz: must be > 0, not -375"),
        (b'{"f0_min_hz": 500, "f0_max_hz": 100}', "f0_min_hz, f0_max_hz: need f0_min_hz < f0_max_hz"),
        (b'{"loudness_min": 1, "loudness_max": 0}', "loudness_min, loudness_max"),
        (b'{"f0_max_hz": NaN}', "f0_max_hz: must be finite"),
    ],
)
def test_bad_metadata_is_refused_naming_the_key(tmp_path, bare_bytes, with_raw_metadata, content, expected):
    path = tmp_path / "bad.tflite"
    path.write_bytes(with_raw_metadata(bare_bytes, content))
    with pytest.raises(ModelError) as caught:
        read_metadata(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


@pytest.mark.runtime
def test_load_model_refuses_bad_metadata(tmp_path, bare_bytes, with_raw_metadata):
    path = tmp_path / "bad.tflite"
    path.write_bytes(with_raw_metadata(bare_bytes, b'{"frame_rate_hz": "fast"}'))
    with pytest.raises(ModelError, match="bad.tflite: metadata.json: frame_rate_hz"):
        load_model(path)


def test_every_bad_key_is_listed(tmp_path, bare_bytes, with_raw_metadata):
    path = tmp_path / "bad.tflite"
    path.write_bytes(with_raw_metadata(bare_bytes, b'{"name": 1, "licence": 2, "unknown_key": 3}'))
    with pytest.raises(ModelError, match=r"name: .*; licence: "):
        read_metadata(path)


def test_zip_without_metadata_json_is_bare(tmp_path, bare_bytes, with_raw_metadata):
    path = tmp_path / "other.tflite"
    path.write_bytes(with_raw_metadata(bare_bytes, b"hello", member="README.txt"))
    assert read_metadata(path) == {}


def test_truncated_zip_is_refused(tmp_path, paths):
    data = paths.demo.read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[:-30])
    with pytest.raises(ModelError, match="cut.tflite: .*truncated"):
        read_metadata(path)
