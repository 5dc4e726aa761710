"""load_model: refusals (each naming the file and the problem), metadata and defaults."""

from __future__ import annotations

import numpy as np
import pytest

from ddsp_device.errors import ModelError
from ddsp_device.model import ModelDefaults, load_model
from ddsp_device.model.flatbuffer import _Walker

pytestmark = pytest.mark.runtime


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        (
            "wrong_names.tflite",
            [
                "missing output tensor(s) harmonic_amps, harmonic_dist, noise_mags",
                "unexpected output tensor(s) amps, dist, noise",
                "the model has inputs ['f0_hz', 'loudness'] and outputs ['amps', 'dist', 'noise']",
            ],
        ),
        ("dynamic_shape.tflite", ["f0_hz: dynamic shape [1, -1]", "harmonic_amps: dynamic shape [1, -1, 64]"]),
        ("flex.tflite", ["needs Flex (SELECT_TF_OPS) ops: FlexCosh; not supported"]),
        (
            "wrong_harmonics.tflite",
            [
                "harmonic_amps: shape [1, 8, 60], expected [1, 8, 64]",
                "harmonic_dist: shape [1, 8, 60], expected [1, 8, 64]",
            ],
        ),
        ("wrong_dtype.tflite", ["f0_hz: dtype int32 not supported; expected float32 or int8"]),
    ],
)
def test_malformed_fixture_is_refused_naming_the_problem(paths, file_name, expected):
    path = paths.fixtures / file_name
    with pytest.raises(ModelError) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    for words in expected:
        assert words in message
    assert isinstance(caught.value, ValueError)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tflite"
    with pytest.raises(ModelError, match="nope.tflite: no such model file"):
        load_model(path)


def test_directory(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)


def test_unreadable_file(tmp_path, paths, monkeypatch):
    from ddsp_device.model import loader

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(loader, "open", refuse, raising=False)  # root reads any chmod-0 file
    with pytest.raises(ModelError, match="locked.tflite: cannot read model file: Permission denied"):
        load_model(tmp_path / "locked.tflite")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty.tflite: empty file \(0 bytes\)"):
        load_model(path)


@pytest.mark.parametrize(
    "content",
    [
        b"abc",
        np.random.default_rng(0).bytes(4096),
        b"PK\x03\x04 a zip, not a model" * 10,
        b'{"name": "a json file"}',
    ],
    ids=["tiny", "random", "zip-like", "json"],
)
def test_not_a_tflite_flatbuffer(tmp_path, content):
    path = tmp_path / "junk.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"junk.tflite: not a TFLite flatbuffer \(bytes 4..8 are .*expected b'TFL3'\)"):
        load_model(path)


def test_random_bytes_behind_a_tflite_identifier(tmp_path):
    data = bytearray(np.random.default_rng(1).bytes(4096))
    data[4:8] = b"TFL3"
    path = tmp_path / "random.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="random.tflite: truncated or corrupt TFLite flatbuffer"):
        load_model(path)


@pytest.mark.parametrize("fraction", [0.02, 0.25, 0.5, 0.75, 0.99])
def test_truncated_flatbuffer(tmp_path, paths, flatbuffer_part, fraction):
    data = flatbuffer_part(paths.demo.read_bytes())
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: max(8, int(len(data) * fraction))])
    with pytest.raises(ModelError, match="cut.tflite: truncated or corrupt TFLite flatbuffer"):
        load_model(path)


def test_truncated_metadata_zip(tmp_path, paths, flatbuffer_part):
    data = paths.demo.read_bytes()
    flatbuffer_length = len(flatbuffer_part(data))
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: flatbuffer_length + 60])
    with pytest.raises(ModelError, match="cut.tflite: .*truncated"):
        load_model(path)


def _set_opcode_version(data: bytes, version: int) -> bytes:
    """Rewrite the version of every operator code whose version is stored in the file."""
    patched = bytearray(data)
    walker = _Walker(data)
    model = walker.table(walker.u32(0, "root"), "Model")
    changed = 0
    for code in walker.tables(model, 1, "operator_codes"):
        position = walker._field_pos(data, code, 2)
        if position:
            patched[position : position + 4] = version.to_bytes(4, "little")
            changed += 1
    assert changed
    return bytes(patched)


def test_unknown_operator_version_is_wrapped(tmp_path, paths):
    path = tmp_path / "future.tflite"
    path.write_bytes(_set_opcode_version(paths.demo.read_bytes(), 99))
    with pytest.raises(ModelError) as caught:
        load_model(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "cannot load the model" in message or "cannot prepare the model" in message
    assert "version" in message and "99" in message
    assert caught.value.__cause__ is not None


def test_demo_fixture_info(paths):
    with load_model(paths.demo) as model:
        info = model.info
    assert info.path == str(paths.demo)
    assert info.name == "TestFixture"
    assert info.metadata_source == "metadata.json"
    assert (info.sample_rate_hz, info.frame_rate_hz) == (48000, 375.0)
    assert (info.f0_min_hz, info.f0_max_hz, info.loudness_min, info.loudness_max) == (30.0, 4200.0, 0.0, 1.0)
    assert info.licence == "Apache-2.0"
    assert "not trained" in info.provenance
    assert info.exported_at == ""
    assert (info.window_frames, info.n_harmonics, info.n_noise_bands, info.state_size) == (8, 64, 65, 0)
    assert info.quantised_inputs and info.quantised_outputs
    assert set(info.tensor_dtypes.values()) == {"int8"}
    assert info.extra == {"fixture": "test fixture, not an instrument"}
    assert info.runtime_name in ("tflite-runtime", "ai-edge-litert")


def test_bare_file_takes_defaults(paths):
    with load_model(paths.float_window) as model:
        info = model.info
    assert info.metadata_source == "defaults"
    assert info.name == "float_window"
    assert (info.sample_rate_hz, info.frame_rate_hz, info.f0_min_hz, info.f0_max_hz) == (48000, 250.0, 30.0, 4200.0)
    assert (info.loudness_min, info.loudness_max, info.licence, info.provenance) == (0.0, 1.0, "unknown", "")
    assert not info.quantised_inputs and not info.quantised_outputs
    assert info.extra == {}


def test_defaults_override_for_bare_file_only(paths):
    defaults = ModelDefaults(sample_rate_hz=16000, frame_rate_hz=375.0, f0_min_hz=50.0, f0_max_hz=2000.0)
    with load_model(paths.float_window, defaults=defaults) as model:
        info = model.info
    assert (info.sample_rate_hz, info.frame_rate_hz, info.f0_min_hz, info.f0_max_hz) == (16000, 375.0, 50.0, 2000.0)
    with load_model(paths.demo, defaults=defaults) as model:  # metadata wins over defaults
        assert (model.info.sample_rate_hz, model.info.frame_rate_hz) == (48000, 375.0)


def test_model_defaults():
    defaults = ModelDefaults()
    assert (defaults.sample_rate_hz, defaults.frame_rate_hz, defaults.f0_min_hz, defaults.f0_max_hz) == (
        48000,
        250.0,
        30.0,
        4200.0,
    )
    with pytest.raises(ValueError):
        ModelDefaults(f0_min_hz=500.0, f0_max_hz=100.0)


def test_state_fixture_info(paths):
    with load_model(paths.state) as model:
        info = model.info
    assert info.name == "StateFixture"
    assert (info.window_frames, info.state_size) == (1, 16)
    assert info.tensor_dtypes["state_in"] == info.tensor_dtypes["state_out"] == "int8"


def test_bad_arguments(paths):
    with pytest.raises(ModelError, match="unknown runtime 'onnx'"):
        load_model(paths.demo, runtime="onnx")
    with pytest.raises(ValueError, match="num_threads"):
        load_model(paths.demo, num_threads=0)


def test_model_with_appended_metadata_loads_and_matches_bare(tmp_path, paths, flatbuffer_part):
    """The runtime ignores the zip: outputs with and without it are identical."""
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(flatbuffer_part(paths.demo.read_bytes()))
    with load_model(paths.demo) as with_zip, load_model(bare) as without_zip:
        assert without_zip.info.metadata_source == "defaults"
        for f0_hz, loudness in ((220.0, 0.5), (440.0, 0.9), (880.0, 0.1)):
            with_zip.step(f0_hz, loudness)
            without_zip.step(f0_hz, loudness)
            np.testing.assert_array_equal(with_zip.harmonic_amps, without_zip.harmonic_amps)
            np.testing.assert_array_equal(with_zip.noise_mags, without_zip.noise_mags)
