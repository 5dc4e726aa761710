"""bind_tensors and Model against interpreter stand-ins: cases no converter makes easily.

The stand-in answers the calls the binder makes (``get_input_details``, ``get_output_details``,
``_get_full_signature_list``) with what a runtime would return; ``StateInterpreter`` also runs a
small recurrence in numpy so every state dtype/quantisation combination can be streamed.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddsp_device.errors import ModelError
from ddsp_device.model import ModelDefaults
from ddsp_device.model.binding import bind_tensors, binding_error
from ddsp_device.model.loader import Model, _make_info

T = 8


def detail(index, name, shape, dtype=np.float32, scales=(), zero_points=(), signature=None):
    shape = np.array(shape, dtype=np.int32)
    return {
        "index": index,
        "name": name,
        "shape": np.where(shape < 0, 1, shape),
        "shape_signature": np.array(signature if signature is not None else shape, dtype=np.int32),
        "dtype": dtype,
        "quantization": (scales[0], zero_points[0]) if scales else (0.0, 0),
        "quantization_parameters": {
            "scales": np.array(scales, dtype=np.float32),
            "zero_points": np.array(zero_points, dtype=np.int32),
            "quantized_dimension": 0,
        },
    }


class FakeInterpreter:
    def __init__(self, inputs, outputs, signatures=None):
        self.inputs, self.outputs, self.signatures = inputs, outputs, signatures

    def get_input_details(self):
        return self.inputs

    def get_output_details(self):
        return self.outputs

    def _get_full_signature_list(self):
        return self.signatures or {}


def contract_tensors(window=T, harmonics=64, state=None, names=None):
    names = names or {}
    inputs = [
        detail(0, names.get("f0_hz", "serving_default_f0_hz:0"), [1, window]),
        detail(1, names.get("loudness", "serving_default_loudness:0"), [1, window]),
    ]
    # Scrambled output order and converter-style names, as the runtimes report them.
    outputs = [
        detail(7, names.get("noise_mags", "noise_mags"), [1, window, 65]),
        detail(5, names.get("harmonic_amps", "harmonic_amps"), [1, window, harmonics]),
        detail(6, names.get("harmonic_dist", "harmonic_dist"), [1, window, 64]),
    ]
    if state:
        inputs.append(detail(2, "serving_default_state_in:0", [1, state[0]]))
        outputs.append(detail(8, "state_out", [1, state[1]]))
    return inputs, outputs


def problems_of(interpreter):
    binding, problems = bind_tensors(interpreter)
    assert binding is None
    return "; ".join(problems)


def test_binds_by_tensor_name_without_signature_whatever_the_order():
    binding, problems = bind_tensors(FakeInterpreter(*contract_tensors()))
    assert problems == []
    assert {name: t.index for name, t in binding.tensors.items()} == {
        "f0_hz": 0,
        "loudness": 1,
        "harmonic_amps": 5,
        "harmonic_dist": 6,
        "noise_mags": 7,
    }
    assert (binding.window_frames, binding.state_size, binding.signature_key) == (T, 0, None)


def test_signature_names_win_over_tensor_names():
    inputs, outputs = contract_tensors(names={"harmonic_amps": "x:0", "harmonic_dist": "y:0", "noise_mags": "z:0"})
    signatures = {
        "serving_default": {
            "inputs": {"f0_hz": 0, "loudness": 1},
            "outputs": {"noise_mags": 5, "harmonic_amps": 6, "harmonic_dist": 7},  # deliberately crossed
        }
    }
    outputs[0]["shape"] = outputs[0]["shape_signature"] = np.array([1, T, 64])  # index 7: dist
    outputs[1]["shape"] = outputs[1]["shape_signature"] = np.array([1, T, 65])  # index 5: noise
    binding, problems = bind_tensors(FakeInterpreter(inputs, outputs, signatures))
    assert problems == []
    assert binding.tensors["noise_mags"].index == 5
    assert binding.tensors["harmonic_amps"].index == 6
    assert binding.signature_key == "serving_default"


def test_several_signatures_without_serving_default():
    signatures = {"a": {"inputs": {}, "outputs": {}}, "b": {"inputs": {}, "outputs": {}}}
    assert "several signatures (a, b) and none is serving_default" in problems_of(
        FakeInterpreter(*contract_tensors(), signatures)
    )


def test_extra_input_is_refused_and_listed():
    inputs, outputs = contract_tensors()
    inputs.append(detail(3, "serving_default_pitch_bend:0", [1, T]))
    message = problems_of(FakeInterpreter(inputs, outputs))
    assert "unexpected input tensor(s) pitch_bend" in message
    assert "the model has inputs ['f0_hz', 'loudness', 'pitch_bend']" in message


def test_inconsistent_window_length():
    inputs, outputs = contract_tensors()
    outputs[1] = detail(5, "harmonic_amps", [1, 4, 64])
    message = problems_of(FakeInterpreter(inputs, outputs))
    assert "inconsistent window length T across tensors" in message
    assert "harmonic_amps T=4" in message
    assert "harmonic_amps: shape [1, 4, 64], expected [1, 8, 64]" in message


def test_batch_and_rank_are_checked():
    inputs, outputs = contract_tensors()
    inputs[1] = detail(1, "loudness", [2, T])
    outputs[0] = detail(7, "noise_mags", [1, T, 65, 1])
    message = problems_of(FakeInterpreter(inputs, outputs))
    assert "loudness: shape [2, 8], expected [1, 8]" in message
    assert "noise_mags: shape [1, 8, 65, 1], expected [1, 8, 65]" in message


def test_unsupported_dtypes():
    inputs, outputs = contract_tensors()
    inputs[1] = detail(1, "loudness", [1, T], dtype=np.uint8, scales=(1 / 255,), zero_points=(0,))
    outputs[2] = detail(6, "harmonic_dist", [1, T, 64], dtype=np.int16)
    message = problems_of(FakeInterpreter(inputs, outputs))
    assert "loudness: dtype uint8 not supported" in message
    assert "harmonic_dist: dtype int16 not supported" in message


def test_int8_needs_one_scale():
    inputs, outputs = contract_tensors()
    outputs[1] = detail(5, "harmonic_amps", [1, T, 64], dtype=np.int8, scales=(0.1, 0.2), zero_points=(0, 0))
    inputs[0] = detail(0, "f0_hz", [1, T], dtype=np.int8)
    message = problems_of(FakeInterpreter(inputs, outputs))
    assert "harmonic_amps: per-channel quantisation (2 scales)" in message
    assert "f0_hz: int8 without a valid quantisation scale" in message


def test_state_models():
    binding, problems = bind_tensors(FakeInterpreter(*contract_tensors(window=1, state=(16, 16))))
    assert problems == []
    assert (binding.window_frames, binding.state_size) == (1, 16)

    message = problems_of(FakeInterpreter(*contract_tensors(window=8, state=(16, 16))))
    assert "state models need T = 1; f0_hz has T = 8" in message

    message = problems_of(FakeInterpreter(*contract_tensors(window=1, state=(16, 32))))
    assert "state_in shape [1, 16] differs from state_out shape [1, 32]" in message

    inputs, outputs = contract_tensors(window=1, state=(16, 16))
    message = problems_of(FakeInterpreter(inputs, outputs[:-1]))
    assert "state_in without state_out" in message


def test_binding_error_keeps_the_list():
    error = binding_error("m.tflite", ["a: bad", "b: worse"])
    assert isinstance(error, ModelError)
    assert str(error) == "m.tflite: not a ddsp-device model: a: bad; b: worse"
    assert error.problems == ["a: bad", "b: worse"]


class StateInterpreter(FakeInterpreter):
    """T = 1 state model in numpy: ``state_out = 0.9 state_in + 0.1 loudness``,
    ``harmonic_amps = 0.5 mean(state_out)``; int8 tensors (de)quantised with their own params."""

    def __init__(self, state_in, state_out):
        inputs = [
            detail(0, "f0_hz", [1, 1]),
            detail(1, "loudness", [1, 1]),
            detail(2, "state_in", [1, 4], *state_in),
        ]
        outputs = [
            detail(5, "harmonic_amps", [1, 1, 64]),
            detail(6, "harmonic_dist", [1, 1, 64]),
            detail(7, "noise_mags", [1, 1, 65]),
            detail(8, "state_out", [1, 4], *state_out),
        ]
        super().__init__(inputs, outputs)
        self.details = {d["index"]: d for d in inputs + outputs}
        self.tensors = {index: np.zeros(d["shape"], d["dtype"]) for index, d in self.details.items()}

    def _real(self, index):
        d, value = self.details[index], self.tensors[index]
        if d["dtype"] == np.int8:
            scale, zero_point = d["quantization"]
            return scale * (value.astype(np.float64) - zero_point)
        return value.astype(np.float64)

    def _store(self, index, real):
        d = self.details[index]
        if d["dtype"] == np.int8:
            scale, zero_point = d["quantization"]
            real = np.clip(np.round(real / scale) + zero_point, -128, 127)
        self.tensors[index] = np.asarray(real).astype(d["dtype"]).reshape(d["shape"])

    def set_tensor(self, index, value):
        d = self.details[index]
        assert value.dtype == d["dtype"] and tuple(value.shape) == tuple(d["shape"]), (index, value)
        self.tensors[index] = value.copy()

    def get_tensor(self, index):
        return self.tensors[index].copy()

    def invoke(self):
        state = 0.9 * self._real(2) + 0.1 * self._real(1)[0, 0]
        self._store(8, state)
        self._store(5, np.full((1, 1, 64), 0.5 * state.mean()))


INT8_A = (np.int8, (1.5 / 255,), (-128,))
INT8_B = (np.int8, (1 / 255,), (-128,))
FLOAT = (np.float32,)


@pytest.mark.parametrize(
    ("state_in", "state_out", "mode"),
    [
        (INT8_B, INT8_B, "copy"),
        (FLOAT, FLOAT, "copy"),
        (INT8_A, INT8_B, "table"),
        (FLOAT, INT8_B, "table"),
        (INT8_B, FLOAT, "quantise"),
    ],
    ids=["int8-same", "float", "int8-requantise", "int8-to-float", "float-to-int8"],
)
def test_state_carried_for_every_dtype_combination(state_in, state_out, mode):
    interpreter = StateInterpreter(state_in, state_out)
    binding, problems = bind_tensors(interpreter)
    assert problems == []
    model = Model(interpreter, binding, _make_info("fake.tflite", None, ModelDefaults(), binding, "fake"), b"")
    assert model._state_mode == mode
    model.reset(220.0)
    for n in range(1, 21):
        model.step(220.0, 1.0)
        assert model.harmonic_amps[0] == pytest.approx(0.5 * (1 - 0.9**n), abs=0.01), n
    model.reset(220.0)
    model.step(220.0, 1.0)
    assert model.harmonic_amps[0] == pytest.approx(0.05, abs=0.005)
    model.close()
