"""The causal decoder: (f0_hz, loudness) → (harmonic_amps, harmonic_dist, noise_mags).

One set of weights, two graphs (Keras 3 functional models with dict inputs and outputs, so the
contract's tensor names survive conversion):

- :func:`build_decoder` — the **training form**, over sequences ``[B, F]``, with a
  ``keras.layers.GRU``.
- :func:`build_state_model` — the **export form**, a state model per ``models/README.md``:
  ``T = 1``, ``state_in`` / ``state_out`` ``[1, units]``, one GRU step written out with dense and
  elementwise layers so that it converts to a flat graph of TFLite builtins (no ``WHILE``, no Flex).

The layers, per frame::

    f0_feature = (f0_hz^p − f0_min^p) / (f0_max^p − f0_min^p)      p = 1/3: log-like
    x  = relu(W_f · f0_feature + W_l · loudness + b)                 input MLP (+ more relu layers)
    h  = GRU(x, h_prev)                                              causal
    y  = relu(V_h · h + V_x · x + c)                                 output MLP (+ more relu layers)
    harmonic_amps = decades(amp_attenuation) repeated over 64 harmonics  (one amplitude, DDSP style)
    harmonic_dist = decades(dist_attenuation [64])
    noise_mags    = decades(noise_attenuation [65])
    decades(a)    = 0.1^clip(a, 0, 6)        1 (0 dB) .. 1e−6 (−120 dB), 20 dB per unit of a

``decades`` plays the part of DDSP's ``exp_sigmoid`` (``2 · 10^−softplus(−z)``: the same
exponential law) with a clip instead of the softplus: softplus needs int8 ``LOG``/``EXP``, which
tflite-runtime 2.14 refuses, while a clip is a ReLU6 fused into the dense layer, and it bounds
the int8 attenuation to exactly [0, 6] (≈ 0.5 dB per step). Training uses a leaky clip (slope
0.01 outside [0, 6], so no unit can get stuck); the export uses the hard clip: the two differ
only outside [0, 6], by 1 % of the excess (e.g. 0.2 dB at a = −1). The output heads start at a
plausible sound (−20 dB, a 1/k roll-off, quiet noise): a start far louder than the data drives
the harmonic part towards silence, where its gradient vanishes, and the noise then learns to
imitate the tone.

Choices that keep the int8 export accurate and loadable on tflite-runtime 2.14:

- ``x^p`` and ``0.1^a`` are ``POW``, which has no int8 kernel: the converter keeps them in float
  at the graph's edges while everything between (dense layers, GRU gates) is int8. So ``f0_hz``
  enters in float and is quantised only after ``x^p``. An int8 range always includes 0, so
  ``x^p`` spans ``[0, f0_max^p]``; ``p = 1/3`` is about the best exponent for that: for a
  180..3200 Hz range one int8 step is ≈ 50 cents at the bottom and ≈ 20 cents at the top, where
  an int8 input in Hz steps by ≈ 12 Hz (over a semitone at 180 Hz). The synthesiser always uses
  the full-precision f0; only the timbre sees these steps. The outputs leave in float after
  the power: their int8 stage is the attenuation, uniform in dB (≈ 0.5 dB steps over 120 dB),
  where linear int8 outputs would reach only ≈ 48 dB below their maximum.
- Sums instead of concatenations (an int8 concatenation forces one scale on all its inputs).
- ``f0_hz`` must already be clamped to ``[f0_min_hz, f0_max_hz]`` (the engine clamps what it
  feeds the model; :func:`model_f0` does the same for training).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

from ddsp_device.train import N_HARMONICS, N_NOISE_BANDS

F0_POWER = 1.0 / 3.0
LEAK = 0.01
MAX_ATTENUATION = 6.0  # decades: 120 dB below full scale
#: Initial attenuations (decades) of the output heads: amplitude −20 dB, harmonic k at 1/k,
#: noise −80 dB.
INITIAL_AMP_ATTENUATION = 1.0
INITIAL_DIST_ATTENUATION = np.log10(np.arange(1, N_HARMONICS + 1))
INITIAL_NOISE_ATTENUATION = 4.0


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes and input ranges of the decoder (saved with each run as ``config.json``)."""

    #: 64 and 64 keep one int8 step at about 27 µs on tflite-runtime 2.14 (x86), so the engine
    #: stays within rtf 0.05; 128 and 128 took 48 µs and rtf 0.051 (``ddsp-device bench``).
    hidden_units: int = 64
    gru_units: int = 64
    input_layers: int = 1
    output_layers: int = 2
    f0_min_hz: float = 30.0
    f0_max_hz: float = 4200.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DecoderConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def model_f0(f0_hz, config: DecoderConfig):
    """What the box feeds the model: ``f0_hz`` clamped to the trained range (numpy or tensors)."""
    if isinstance(f0_hz, np.ndarray):
        return np.clip(f0_hz, config.f0_min_hz, config.f0_max_hz).astype(np.float32)
    return keras.ops.clip(f0_hz, config.f0_min_hz, config.f0_max_hz)


def soft_clip(attenuation):
    """Training: ``clip(a, 0, 6) + 0.01 · (a − clip(a, 0, 6))`` (a leak keeps gradients alive)."""
    clipped = keras.ops.clip(attenuation, 0.0, MAX_ATTENUATION)
    return clipped + LEAK * (attenuation - clipped)


def hard_clip(attenuation):
    """Export: ``clip(a, 0, 6)`` as a ReLU6 (fused into the preceding dense layer)."""
    return keras.layers.ReLU(max_value=MAX_ATTENUATION)(attenuation)


def decades(attenuation, export: bool = False):
    """``0.1^clip(a)``: attenuation in decades (20 dB each) → linear value in [1e−6, 1]."""
    return keras.ops.power(0.1, hard_clip(attenuation) if export else soft_clip(attenuation))


class _Layers:
    """Every weight-carrying layer, shared by the training and the export graph."""

    def __init__(self, config: DecoderConfig):
        h, u = config.hidden_units, config.gru_units
        self.config = config
        self.in_f0 = keras.layers.Dense(h, name="in_f0")
        self.in_loudness = keras.layers.Dense(h, use_bias=False, name="in_loudness")
        self.in_more = [keras.layers.Dense(h, activation="relu", name=f"in_{i}") for i in range(1, config.input_layers)]
        self.gru = keras.layers.GRU(u, return_sequences=True, reset_after=True, name="gru")
        self.out_gru = keras.layers.Dense(h, name="out_gru")
        self.out_skip = keras.layers.Dense(h, use_bias=False, name="out_skip")
        self.out_more = [
            keras.layers.Dense(h, activation="relu", name=f"out_{i}") for i in range(1, config.output_layers)
        ]
        self.amp_head = keras.layers.Dense(
            1, bias_initializer=keras.initializers.Constant(INITIAL_AMP_ATTENUATION), name="amp_head"
        )
        # one amplitude for all harmonics: a fixed broadcast (an FC layer of ones, exact in int8)
        self.amp_repeat = keras.layers.Dense(
            N_HARMONICS, use_bias=False, trainable=False, kernel_initializer="ones", name="amp_repeat"
        )
        self.dist_head = keras.layers.Dense(
            N_HARMONICS, bias_initializer=keras.initializers.Constant(INITIAL_DIST_ATTENUATION), name="dist_head"
        )
        self.noise_head = keras.layers.Dense(
            N_NOISE_BANDS, bias_initializer=keras.initializers.Constant(INITIAL_NOISE_ATTENUATION), name="noise_head"
        )

    def f0_scale(self) -> tuple[float, float]:
        """``(a, b)`` with ``f0_feature = (f0_hz^p − a) / b``."""
        lo = self.config.f0_min_hz**F0_POWER
        hi = self.config.f0_max_hz**F0_POWER
        return lo, hi - lo

    def inputs_mlp(self, f0_feature, loudness):
        x = keras.layers.Add()([self.in_f0(f0_feature), self.in_loudness(loudness)])
        x = keras.layers.ReLU()(x)
        for layer in self.in_more:
            x = layer(x)
        return x

    def outputs_mlp(self, h, x, export: bool = False):
        """The output heads: attenuation (decades) → clip to [0, 6] → ``0.1^a``.

        ``export``: the hard clip (a ReLU6 the converter fuses into the dense layer, so the int8
        attenuation spans exactly [0, 6]) and a ``[1, 1, n]`` reshape *before* the final POW,
        so that POW is the last op and its float output is the model's output (a reshape after
        it would be quantised, making the outputs linear int8 again).
        """
        y = keras.layers.ReLU()(keras.layers.Add()([self.out_gru(h), self.out_skip(x)]))
        for layer in self.out_more:
            y = layer(y)
        clip = hard_clip if export else soft_clip
        attenuations = {
            "harmonic_amps": self.amp_repeat(clip(self.amp_head(y))),
            "harmonic_dist": clip(self.dist_head(y)),
            "noise_mags": clip(self.noise_head(y)),
        }
        if export:
            attenuations = {
                name: keras.layers.Reshape((1, value.shape[-1]), name=f"frame_{name}")(value)
                for name, value in attenuations.items()
            }
        outputs = {name: keras.ops.power(0.1, value) for name, value in attenuations.items()}
        if not export:
            # how far the attenuations stray outside [0, 6] (where training and export differ)
            raw = (self.amp_head(y), self.dist_head(y), self.noise_head(y))
            excess = [keras.ops.mean(keras.ops.abs(a - keras.ops.clip(a, 0.0, MAX_ATTENUATION)), axis=-1) for a in raw]
            outputs["attenuation_excess"] = keras.ops.sum(keras.ops.stack(excess, axis=-1), axis=-1)
        return outputs


def build_decoder(config: DecoderConfig = DecoderConfig()) -> keras.Model:
    """The training form: ``{"f0_hz", "loudness"}`` ``[B, F]`` → outputs ``[B, F, 64|65]``.

    ``f0_hz`` must be clamped to the config's range (:func:`model_f0`). Also has the outputs
    ``"gru_state"`` ``[B, F, units]`` (the GRU's state after each frame, to calibrate the
    export) and ``"attenuation_excess"`` ``[B, F]`` (how far the heads' attenuations lie outside
    [0, 6], where the export's hard clip differs; training penalises it).
    """
    layers = _Layers(config)
    f0_hz = keras.Input(shape=(None,), name="f0_hz")
    loudness = keras.Input(shape=(None,), name="loudness")
    offset, span = layers.f0_scale()
    f0_feature = keras.ops.expand_dims((keras.ops.power(f0_hz, F0_POWER) - offset) / span, -1)
    x = layers.inputs_mlp(f0_feature, keras.ops.expand_dims(loudness, -1))
    h = layers.gru(x)
    outputs = layers.outputs_mlp(h, x)
    outputs["gru_state"] = h
    model = keras.Model({"f0_hz": f0_hz, "loudness": loudness}, outputs, name="decoder")
    model.decoder_config = config
    model.decoder_layers = layers
    return model


class _GruStep:
    """One step of a Keras GRU (``reset_after=True``, gates z, r, h) from dense and elementwise layers.

    ``z = σ(x W_z + b_z + h U_z + c_z)``, ``r = σ(x W_r + b_r + h U_r + c_r)``,
    ``ĥ = tanh(x W_h + b_h + r ⊙ (h U_h + c_h))``, ``h' = z ⊙ h + (1 − z) ⊙ ĥ = ĥ + z ⊙ (h − ĥ)``.
    """

    def __init__(self, gru: keras.layers.GRU):
        units = gru.units
        kernel, recurrent_kernel, bias = (np.asarray(w) for w in gru.get_weights())
        self.units = units
        self.input_dense = keras.layers.Dense(3 * units, name="gru_input")
        self.state_dense = keras.layers.Dense(3 * units, name="gru_state")
        self.input_dense.build((None, kernel.shape[0]))
        self.state_dense.build((None, units))
        self.input_dense.set_weights([kernel, bias[0]])
        self.state_dense.set_weights([recurrent_kernel, bias[1]])

    def __call__(self, x, state):
        u = self.units
        xs = self.input_dense(x)
        hs = self.state_dense(state)
        z = keras.ops.sigmoid(xs[:, :u] + hs[:, :u])
        r = keras.ops.sigmoid(xs[:, u : 2 * u] + hs[:, u : 2 * u])
        candidate = keras.ops.tanh(xs[:, 2 * u :] + r * hs[:, 2 * u :])
        return candidate + z * (state - candidate)


def build_state_model(decoder: keras.Model) -> keras.Model:
    """The export form of a trained :func:`build_decoder` model (same weights, copied).

    Inputs ``f0_hz`` ``[1, 1]``, ``loudness`` ``[1, 1]``, ``state_in`` ``[1, units]``; outputs
    ``harmonic_amps`` / ``harmonic_dist`` ``[1, 1, 64]``, ``noise_mags`` ``[1, 1, 65]``,
    ``state_out`` ``[1, units]``. The f0 normalisation is folded into the first dense layer so
    that ``f0_hz^p`` feeds it directly.
    """
    config: DecoderConfig = decoder.decoder_config
    trained: _Layers = decoder.decoder_layers
    f0_hz = keras.Input(shape=(1,), batch_size=1, name="f0_hz")
    loudness = keras.Input(shape=(1,), batch_size=1, name="loudness")
    state_in = keras.Input(shape=(config.gru_units,), batch_size=1, name="state_in")

    # fresh layers with copied weights, so the export graph owns its own variables
    layers = _Layers(config)
    offset, span = trained.f0_scale()
    kernel, bias = trained.in_f0.get_weights()
    f0_dense = keras.layers.Dense(config.hidden_units, name="in_f0")
    f0_dense.build((None, 1))
    f0_dense.set_weights([kernel / span, bias - kernel[0] * offset / span])
    layers.in_f0 = f0_dense

    x = layers.inputs_mlp(keras.ops.power(f0_hz, F0_POWER), loudness)
    step = _GruStep(trained.gru)
    state_out = step(x, state_in)
    outputs = layers.outputs_mlp(state_out, x, export=True)
    outputs["state_out"] = state_out
    model = keras.Model({"f0_hz": f0_hz, "loudness": loudness, "state_in": state_in}, outputs, name="decoder_step")
    for name in ("in_loudness", "out_gru", "out_skip", "amp_head", "amp_repeat", "dist_head", "noise_head"):
        getattr(layers, name).set_weights(getattr(trained, name).get_weights())
    for mine, theirs in zip(layers.in_more + layers.out_more, trained.in_more + trained.out_more):
        mine.set_weights(theirs.get_weights())
    return model
