"""Output stage, one hop at a time (models/README.md, "Output stage").

Order per hop: :func:`tone_block` → :func:`reverb_block` → :func:`dc_block` →
:func:`apply_gain_db` → :func:`limit_block`. The tone voices the instrument; the room follows.

Every stage follows one pattern: ``make_*`` builds a state object that holds the streaming state
*and* every scratch array the stage needs, so the per-hop functions allocate no arrays, log
nothing and take no locks. The per-hop functions take the input block ``x`` (float32, ``[B]``,
C-contiguous), the state and an output array ``out`` (float32, ``[B]``, C-contiguous; it may be
``x`` itself), update the state in place and return it.

Any block length works. ``max_block`` only sizes the scratch arrays (capped at a chunk of a few
hundred samples); longer blocks are split into chunks, never rejected. The reverb and the DC
blocker are linear and time-invariant: their output does not depend on how a signal is cut into
blocks (the reverb bit for bit, the DC blocker up to float32 rounding, ~1e-6). The tone's ramp
to a new setting runs per sample, so its output does not depend on the blocks either when the
setting changes at the same samples. The limiter's gain is computed per sample, so its output
does not depend on the block length either (up to float32 rounding and the snap back to unity
gain, below 1e-7).

Vectorisation:

* DC blocker: the first-order recursion over a chunk is a scaled prefix sum,
  ``y[n] = Rⁿ · (R·y_prev + cumsum(R⁻ᵏ·Δx[k]))`` — the same numbers as the product with the
  lower-triangular matrix of powers ``R^(n−k)``, at O(b) instead of O(b²).
* Tone: four first-order high-passes (``HP`` and ``HP²`` at two corners) as the same prefix
  sums, two corners side by side in a time-major ``[b, 2]`` array, in float64; the shelves are
  a per-sample mix of them.
* Reverb: an 8-line feedback delay network. When every delay is at least the block length, the
  block's delay-line outputs were all written by earlier blocks, so a block is one gather
  (``np.take``) and one ``[b, 18] @ [18, 10]`` matrix product written straight into the
  time-major delay buffer (mixing, line gains, damping, input, wet tap and dry/wet mix folded
  into one matrix). Longer blocks are split into sub-blocks no longer than the shortest delay.
* Limiter: the attenuation envelope ``e[n] = max(a[n], α·e[n−1])`` (instant attack, exponential
  release) equals ``αⁿ · cummax(a[k]·α⁻ᵏ)``: one ``np.maximum.accumulate`` per chunk.

Non-finite input (NaN/inf) never stays in a state: each stage detects it (for free in the DC
blocker and the tone, one ``np.dot(x, x)`` in the reverb, the peak the limiter needs anyway),
resets itself and counts it in ``state.nonfinite_blocks``; the limiter outputs that block as
silence.

This module imports only numpy and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Longest stretch one prefix-sum or envelope pass handles; longer blocks are split.
CHUNK = 256

# ---------------------------------------------------------------------------------------------
# Master gain
# ---------------------------------------------------------------------------------------------


def apply_gain_db(x: np.ndarray, gain_db: float, out: np.ndarray) -> np.ndarray:
    """``out = x · 10^(gain_db / 20)``.

    Args:
        x: input block, float32 ``[B]``.
        gain_db: master gain, dB.
        out: output, float32 ``[B]``; may be ``x``.

    Returns:
        ``out``.
    """
    np.multiply(x, 10.0 ** (gain_db / 20.0), out=out)
    return out


# ---------------------------------------------------------------------------------------------
# DC blocker
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class DcBlockerState:
    """Streaming state and scratch of :func:`dc_block`.

    Attributes:
        sample_rate: Hz.
        cutoff_hz: corner frequency (approximately −3 dB), Hz.
        pole: ``R = exp(−2π·cutoff_hz / sample_rate)``.
        x_prev: last input sample of the previous block.
        y_prev: last output sample of the previous block.
        nonfinite_blocks: blocks whose input was NaN/inf; each one reset the state.
    """

    sample_rate: int
    cutoff_hz: float
    pole: float
    x_prev: float
    y_prev: float
    nonfinite_blocks: int
    #: ``[C]``: ``R^k`` and ``R^(−k)``, k = 0..C−1.
    _pow: np.ndarray
    _inv_pow: np.ndarray
    _tmp: np.ndarray

    def reset(self) -> None:
        """Forget the signal history (silence before the next block)."""
        self.x_prev = 0.0
        self.y_prev = 0.0


def make_dc_blocker(
    sample_rate: int, cutoff_hz: float = 10.0, max_block: int = CHUNK
) -> DcBlockerState:
    """A first-order high-pass ``y[n] = x[n] − x[n−1] + R·y[n−1]``, ``R = exp(−2π·fc/sr)``.

    Over a chunk of ``b`` samples the recursion is evaluated exactly as a scaled prefix sum,
    ``y[n] = Rⁿ · (R·y_prev + Σ_{k≤n} R⁻ᵏ·(x[k] − x[k−1]))``: O(b), no Python loop. (Equal to
    the product with the lower-triangular matrix of powers ``R^(n−k)``, without its O(b²) cost.)

    Args:
        sample_rate: Hz.
        cutoff_hz: corner frequency, Hz, in ``(0, sample_rate / 4)``.
        max_block: the longest block you will pass; sizes the scratch (capped at :data:`CHUNK`).

    Raises:
        ValueError: an argument is out of range.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("max_block", max_block)
    if not 0.0 < cutoff_hz < sample_rate / 4.0:
        raise ValueError(
            f"cutoff_hz must be in (0, {sample_rate / 4.0:g}) Hz at {sample_rate} Hz, "
            f"got {cutoff_hz!r}"
        )
    pole = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    # Keep R^(−k) ≤ e^2 across a chunk so the float32 prefix sum loses no precision.
    c = max(1, min(max_block, CHUNK, int(2.0 / -math.log(pole))))
    k = np.arange(c, dtype=np.float64)
    return DcBlockerState(
        sample_rate=sample_rate,
        cutoff_hz=float(cutoff_hz),
        pole=pole,
        x_prev=0.0,
        y_prev=0.0,
        nonfinite_blocks=0,
        _pow=(pole**k).astype(np.float32),
        _inv_pow=(pole ** (-k)).astype(np.float32),
        _tmp=np.empty(c, np.float32),
    )


def dc_block(x: np.ndarray, state: DcBlockerState, out: np.ndarray) -> DcBlockerState:
    """High-pass one block.

    Args:
        x: input, float32 ``[B]``.
        state: from :func:`make_dc_blocker`; updated in place.
        out: output, float32 ``[B]``; may be ``x``.

    Returns:
        ``state``. A block with NaN/inf resets the state (the bad samples pass through for the
        limiter to silence) and counts in ``state.nonfinite_blocks``.
    """
    tmp_all = state._tmp
    c = tmp_all.shape[0]
    pole = state.pole
    n = x.shape[0]
    x_prev = state.x_prev
    y_prev = state.y_prev
    start = 0
    while start < n:
        b = min(c, n - start)
        xs = x[start : start + b]
        tmp = tmp_all[:b]
        np.subtract(xs[1:], xs[:-1], out=tmp[1:])
        np.multiply(tmp[1:], state._inv_pow[1:b], out=tmp[1:])
        tmp[0] = (float(xs[0]) - x_prev) + pole * y_prev
        x_prev = float(xs[b - 1])  # read before ``out`` (maybe ``x``) is written
        np.add.accumulate(tmp, out=tmp)
        ys = out[start : start + b]
        np.multiply(tmp, state._pow[:b], out=ys)
        y_prev = float(ys[b - 1])
        start += b
    # A NaN/inf anywhere in the block reaches the last output sample (the prefix sum carries it).
    if math.isfinite(y_prev):
        state.x_prev = x_prev
        state.y_prev = y_prev
    elif n:
        state.reset()
        state.nonfinite_blocks += 1
    return state


# ---------------------------------------------------------------------------------------------
# Tone: dark/distant ↔ bright/close
# ---------------------------------------------------------------------------------------------

#: Corner of the two dark shelves, Hz: the highs fall from about here.
TONE_DARK_HZ = 1500.0
#: Corner of the two bright shelves, Hz: presence and air rise towards here and above.
TONE_BRIGHT_HZ = 5000.0
#: Gain of the shelf pair well above its corner at ``tone = −1`` and at ``tone = +1``, dB.
TONE_DARK_DB = -20.0
TONE_BRIGHT_DB = 13.0
#: The tone ramps to a new value at most its whole range (2) in this time, s: no zipper noise.
TONE_RAMP_S = 0.05

#: ``g = expm1(|tone| · dB · ln(10) / 40)``: half the pair's dB in each of its two shelves.
_TONE_DARK_EXP = TONE_DARK_DB * math.log(10.0) / 40.0  # times −tone, for tone < 0
_TONE_BRIGHT_EXP = TONE_BRIGHT_DB * math.log(10.0) / 40.0  # times tone, for tone > 0


@dataclass(eq=False)
class ToneState:
    """Streaming state and scratch of :func:`tone_block`.

    Attributes:
        sample_rate: Hz.
        dark_hz, bright_hz: corners of the dark and the bright shelves, Hz.
        dark_pole, bright_pole: ``p = (1 − tan(π·f/sr)) / (1 + tan(π·f/sr))`` of each corner.
        tone: the tone applied to the last sample of the last block, −1..1; it ramps towards
            the requested tone at ``2 / TONE_RAMP_S`` per second.
        nonfinite_blocks: blocks whose input was NaN/inf; each one reset the filters.
    """

    sample_rate: int
    dark_hz: float
    bright_hz: float
    dark_pole: float
    bright_pole: float
    tone: float
    nonfinite_blocks: int
    #: The tone the ramp heads for; the ramp's change per sample.
    _target: float
    _step: float
    #: The last input sample; the last output of ``HP`` and of ``HP²``, [dark, bright] each.
    _x_prev: float
    _y1_prev: list
    _y2_prev: list
    #: ``[C, 2]`` float64, columns [dark, bright]: ``c·p^(−k)`` and ``p^k``, ``c = (1 + p) / 2``.
    _inv_pow: np.ndarray
    _pow: np.ndarray
    #: ``[C]`` float64: ``k + 1``, the ramp's sample index.
    _index: np.ndarray
    #: float64 scratch: ``[C]`` the signal; ``[C, 2]`` (time-major, so that a chunk is one
    #: contiguous slice) ``HP`` and ``HP²`` of each corner; ``[3, C]`` the ramp and its gains.
    _x: np.ndarray
    _hp1: np.ndarray
    _hp2: np.ndarray
    _ramp: np.ndarray

    def reset(self) -> None:
        """Forget the signal history (silence before the next block); the tone stays."""
        self._x_prev = 0.0
        self._y1_prev[:] = (0.0, 0.0)
        self._y2_prev[:] = (0.0, 0.0)


def tone_gains(tone: float) -> tuple[float, float]:
    """``tone`` → ``(g_dark, g_bright)``: each shelf's gain well above its corner, minus 1.

    At most one is non-zero; both are 0 at ``tone = 0``.
    """
    if tone < 0.0:
        return math.expm1(-tone * _TONE_DARK_EXP), 0.0
    return 0.0, math.expm1(tone * _TONE_BRIGHT_EXP)


def _shelf_pole(corner_hz: float, sample_rate: int) -> float:
    k = math.tan(math.pi * corner_hz / sample_rate)
    return (1.0 - k) / (1.0 + k)


def make_tone(sample_rate: int, tone: float = 0.0, max_block: int = CHUNK) -> ToneState:
    """Tilt the highs: ``tone`` −1 (dark, distant) .. 0 (flat) .. +1 (bright, close).

    Two identical first-order shelves in cascade, at a corner that depends on the direction::

        H(z)  = (1 + g·HP(z))²      HP(z) = c·(1 − z⁻¹) / (1 − p·z⁻¹),  c = (1 + p) / 2
        tone < 0:  p at TONE_DARK_HZ,    g = 10^(−tone·TONE_DARK_DB / 40) − 1    (−0.68 .. 0)
        tone > 0:  p at TONE_BRIGHT_HZ,  g = 10^(tone·TONE_BRIGHT_DB / 40) − 1   (0 .. 1.12)

    ``HP`` is the bilinear first-order high-pass (``p = (1 − tan(π·f/sr)) / (1 + tan(π·f/sr))``),
    so each shelf is 1 well below its corner and ``1 + g`` well above it: the pair reaches
    ``|tone|·TONE_DARK_DB`` (or ``tone·TONE_BRIGHT_DB``) dB at the top of the band and leaves
    the body of the sound (below ~1 kHz) within 3 dB. At 48 kHz ``tone = −1`` is −2.8 dB at
    1 kHz, −7.5 at 2 kHz, −13.7 at 4 kHz and −18.0 at 8 kHz; ``tone = +1`` is +1.0, +3.2, +7.4
    and +11.1 dB. ``tone = 0`` is the identity, bit for bit.

    Monotonic: ``HP = (1 + A)/2`` with ``A`` an allpass, so ``Re HP = |HP|²`` and
    ``d|1 + g·HP|² / dg = 2·|HP|²·(1 + g) ≥ 0``; ``g`` rises with ``tone``, so the gain at every
    frequency does too.

    Expanded, ``(1 + g·HP)² = 1 + 2g·HP + g²·HP²``: a block runs the fixed filters ``HP`` and
    ``HP² = HP(HP)`` of both corners (their state never depends on the tone) and mixes them,
    ``y = x + g·(2·HP(x) + g·HP²(x))``, with one gain per sample while the tone ramps. Each
    first-order recursion is the DC blocker's scaled prefix sum, both corners in one ``[b, 2]``
    pass, in float64 (a chunk is short enough that ``p^(−k)`` stays below ``e^600``: 256
    samples at 48 kHz).

    Args:
        sample_rate: Hz. A corner above ``sample_rate / 6`` is lowered to it.
        tone: the tone to start at (no ramp), −1..1.
        max_block: the longest block you will pass; sizes the scratch (capped at :data:`CHUNK`).

    Raises:
        ValueError: an argument is out of range.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("max_block", max_block)
    _check_tone(tone)
    dark_hz = min(TONE_DARK_HZ, sample_rate / 6.0)
    bright_hz = min(TONE_BRIGHT_HZ, sample_rate / 6.0)
    poles = np.array([_shelf_pole(dark_hz, sample_rate), _shelf_pole(bright_hz, sample_rate)])
    # Keep p^(−k) ≤ e^600 across a chunk: far inside float64's range, whatever the signal.
    c = max(1, min(max_block, CHUNK, int(600.0 / -math.log(float(poles.min())))))
    k = np.arange(c, dtype=np.float64)
    return ToneState(
        sample_rate=sample_rate,
        dark_hz=dark_hz,
        bright_hz=bright_hz,
        dark_pole=float(poles[0]),
        bright_pole=float(poles[1]),
        tone=float(tone),
        nonfinite_blocks=0,
        _target=float(tone),
        _step=2.0 / (TONE_RAMP_S * sample_rate),
        _x_prev=0.0,
        _y1_prev=[0.0, 0.0],
        _y2_prev=[0.0, 0.0],
        _inv_pow=0.5 * (1.0 + poles) * poles ** (-k[:, None]),
        _pow=poles ** k[:, None],
        _index=k + 1.0,
        _x=np.zeros(c, np.float64),
        _hp1=np.zeros((c, 2), np.float64),
        _hp2=np.zeros((c, 2), np.float64),
        _ramp=np.zeros((3, c), np.float64),
    )


def _high_pass(state: ToneState, s: np.ndarray, s_prev, y_prev: list, out: np.ndarray) -> None:
    """``out[n, i] = p_i·out[n−1, i] + c_i·(s[n] − s[n−1])``, both corners, one chunk, float64.

    As a scaled prefix sum: ``out[n] = pⁿ·(p·y_prev + Σ_{k≤n} c·p⁻ᵏ·(s[k] − s[k−1]))``.
    ``s`` is ``[b]`` (one input for both columns, ``s_prev`` a float) or ``[b, 2]`` (``s_prev``
    a pair); ``y_prev`` (a pair) is read, then set to the last outputs.
    """
    b = out.shape[0]
    if s.ndim == 1:
        np.subtract(s[1:], s[:-1], out=out[1:, 0])
        np.copyto(out[1:, 1], out[1:, 0])
        out[0, 0] = out[0, 1] = float(s[0]) - s_prev
    else:
        np.subtract(s[1:], s[:-1], out=out[1:])
        out[0, 0] = float(s[0, 0]) - s_prev[0]
        out[0, 1] = float(s[0, 1]) - s_prev[1]
    np.multiply(out, state._inv_pow[:b], out=out)
    out[0, 0] += state.dark_pole * y_prev[0]
    out[0, 1] += state.bright_pole * y_prev[1]
    np.add.accumulate(out, axis=0, out=out)
    np.multiply(out, state._pow[:b], out=out)
    y_prev[0] = float(out[b - 1, 0])
    y_prev[1] = float(out[b - 1, 1])


def _shelf_pair(h1: np.ndarray, h2: np.ndarray, g) -> np.ndarray:
    """``h2 ← g·(2·h1 + g·h2)`` (``g`` a float or ``[b]``): the pair's part beyond ``x``."""
    np.multiply(h2, g, out=h2)
    np.add(h2, h1, out=h2)
    np.add(h2, h1, out=h2)
    np.multiply(h2, g, out=h2)
    return h2


def tone_block(x: np.ndarray, tone: float, state: ToneState, out: np.ndarray) -> ToneState:
    """Voice one block: ``out = x + g·(2·HP(x) + g·HP²(x))`` (see :func:`make_tone`).

    A new ``tone`` is reached by a linear ramp of ``2 / TONE_RAMP_S`` per second, sample by
    sample. The ramp is part of the state, so the output does not depend on how the signal is
    cut into blocks (up to float rounding, ~1e-7) when the tone changes at the same samples.
    While the tone is 0 and not ramping, ``out`` is ``x`` bit for bit; the filters still run,
    so a later move starts from their true state.

    Args:
        x: input, float32 ``[B]``.
        tone: −1 (dark, distant) .. 0 (flat) .. +1 (bright, close).
        state: from :func:`make_tone`; updated in place.
        out: output, float32 ``[B]``; may be ``x``.

    Returns:
        ``state``. A block with NaN/inf resets the filters (the bad samples reach the output for
        the limiter to silence) and counts in ``state.nonfinite_blocks``.

    Raises:
        ValueError: ``tone`` is outside −1..1.
    """
    if tone != state._target:
        _check_tone(tone)
        state._target = float(tone)
    target = state._target
    c = state._x.shape[0]
    n = x.shape[0]
    y1_prev, y2_prev = state._y1_prev, state._y2_prev
    start = 0
    while start < n:
        b = min(c, n - start)
        xs = state._x[:b]
        np.copyto(xs, x[start : start + b])
        hp1, hp2 = state._hp1[:b], state._hp2[:b]
        hp1_prev = (y1_prev[0], y1_prev[1])  # HP²'s input history: HP's last outputs
        _high_pass(state, xs, state._x_prev, y1_prev, hp1)
        _high_pass(state, hp1, hp1_prev, y2_prev, hp2)
        state._x_prev = float(xs[b - 1])
        os = out[start : start + b]
        t0 = state.tone
        if t0 == target:
            g_dark, g_bright = tone_gains(t0)
            if g_dark != 0.0:
                np.add(xs, _shelf_pair(hp1[:, 0], hp2[:, 0], g_dark), out=xs)
                np.copyto(os, xs)
            elif g_bright != 0.0:
                np.add(xs, _shelf_pair(hp1[:, 1], hp2[:, 1], g_bright), out=xs)
                np.copyto(os, xs)
            elif out is not x:
                np.copyto(os, x[start : start + b])
        else:
            ramp, g_dark, g_bright = state._ramp[0, :b], state._ramp[1, :b], state._ramp[2, :b]
            step = state._step if target > t0 else -state._step
            np.multiply(state._index[:b], step, out=ramp)
            np.add(ramp, t0, out=ramp)
            t1 = t0 + step * b
            if target > t0:
                np.minimum(ramp, target, out=ramp)
                state.tone = target if t1 >= target else t1
            else:
                np.maximum(ramp, target, out=ramp)
                state.tone = target if t1 <= target else t1
            np.minimum(ramp, 0.0, out=g_dark)
            np.multiply(g_dark, -_TONE_DARK_EXP, out=g_dark)
            np.expm1(g_dark, out=g_dark)
            np.maximum(ramp, 0.0, out=g_bright)
            np.multiply(g_bright, _TONE_BRIGHT_EXP, out=g_bright)
            np.expm1(g_bright, out=g_bright)
            np.add(xs, _shelf_pair(hp1[:, 0], hp2[:, 0], g_dark), out=xs)
            np.add(xs, _shelf_pair(hp1[:, 1], hp2[:, 1], g_bright), out=xs)
            np.copyto(os, xs)
        start += b
    # A NaN/inf anywhere in the block reaches the last output of every high-pass.
    if not math.isfinite(y2_prev[0] + y2_prev[1]) and n:
        state.reset()
        state.nonfinite_blocks += 1
    return state


def _check_tone(tone: float) -> None:
    if not -1.0 <= tone <= 1.0:
        raise ValueError(f"tone must be in -1..1, got {tone!r}")


# ---------------------------------------------------------------------------------------------
# Reverb: 8-line feedback delay network
# ---------------------------------------------------------------------------------------------

#: Nominal line delays span this range (geometric spacing), then each becomes a distinct prime.
REVERB_DELAY_MIN_S = 0.020
REVERB_DELAY_MAX_S = 0.060
REVERB_N_LINES = 8
REVERB_PREDELAY_S = 0.010
#: The decay time at Nyquist is this fraction of ``decay_s`` (the in-loop damping).
REVERB_NYQUIST_DECAY_RATIO = 0.4
DECAY_MIN_S = 0.1
DECAY_MAX_S = 10.0
#: Spare rows (samples) in the delay buffer; when the write position reaches the end, the last
#: ``max delay + 1`` rows are copied to the front (one ~100 KiB copy every 8192 samples).
_REVERB_SLACK = 8192


@dataclass(eq=False)
class ReverbState:
    """Streaming state and scratch of :func:`reverb_block`.

    Attributes:
        sample_rate: Hz.
        decay_s: RT60 at low frequencies (DC), s. Higher frequencies decay faster (the Nyquist
            RT60 is ``REVERB_NYQUIST_DECAY_RATIO · decay_s``).
        delays: line delays, samples (distinct primes).
        predelay: samples between the input and the network.
        sub_block: the longest stretch processed in one pass (≤ the shortest delay).
        nonfinite_blocks: blocks whose input was NaN/inf; each one cleared the network.
    """

    sample_rate: int
    decay_s: float
    delays: tuple[int, ...]
    predelay: int
    sub_block: int
    nonfinite_blocks: int
    #: ``[n_rows, 10]``, time-major: columns 0..7 are the delay lines, 8 the input (for the
    #: pre-delay), 9 the output (written, never read).
    _buf: np.ndarray
    _flat: np.ndarray
    _pos: int
    _keep: int
    #: ``[18, 10]``: gathered ``[s[n] ×8, s[n−1] ×8, x[n − predelay], x[n]]`` → buffer row.
    _matrix: np.ndarray
    #: ``[sub, 18]``: flat index of each gathered value, counted from row ``write − max lag``.
    _index: np.ndarray
    _max_lag: int
    _gathered: np.ndarray
    #: ``[8]``: the wet output tap (unit-energy impulse response), scaled by ``mix`` in the matrix.
    _tap: np.ndarray
    _mix: float

    def reset(self) -> None:
        """Clear the network (silence before the next block)."""
        self._buf.fill(0.0)
        self._pos = self._keep

    def _set_mix(self, mix: float) -> None:
        n_lines = self._tap.shape[0]
        self._matrix[:n_lines, _COL_OUT] = self._tap * mix
        self._matrix[_ROW_DRY, _COL_OUT] = 1.0 - mix
        self._mix = mix


# Buffer columns and gathered rows (see ReverbState).
_COL_IN = 8
_COL_OUT = 9
_N_COLS = 10
_ROW_PREDELAYED = 16
_ROW_DRY = 17
_N_GATHER = 18


def _next_prime(n: int) -> int:
    n = max(n, 2)
    while any(n % d == 0 for d in range(2, math.isqrt(n) + 1)):
        n += 1
    return n


def _hadamard(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(n)


def make_reverb(
    sample_rate: int, decay_s: float, max_block: int = CHUNK, like: "ReverbState | None" = None
) -> ReverbState:
    """A small, cheap room: an 8-line feedback delay network with a pre-delay.

    Lines: distinct prime delays spread geometrically over 20–60 ms; an orthogonal (Hadamard)
    feedback matrix; per-line gains ``10^(−3·D/(sr·decay_s))`` so the network decays by 60 dB in
    ``decay_s`` at low frequencies; in each loop a 2-tap average ``a0·s[n] + a1·s[n−1]``
    (``a0 + a1 = 1``, ``a0 ≥ a1``) that shortens the decay towards Nyquist. Every loop gain is
    below 1 at every frequency and the feedback matrix is orthogonal, so the network is stable.
    A 10 ms pre-delay sits before the network.

    The wet output tap is scaled so that the wet impulse response has unit energy: for a
    sustained broadband input the wet level equals the dry level (0 dB). A single sinusoid lands
    between or on the network's modes, so its wet level varies by several dB around that (more
    with longer decays).

    Args:
        sample_rate: Hz.
        decay_s: RT60 at low frequencies, s, in ``[DECAY_MIN_S, DECAY_MAX_S]``.
        max_block: the longest block you will pass; sizes the scratch (capped at the shortest
            delay).
        like: a reverb with the same ``sample_rate`` and ``decay_s`` whose normalisation is
            taken over instead of simulating the impulse response again (the block size does not
            change the response). The simulation is a matrix product, which OpenBLAS serves from
            a 32 MB buffer per thread that calls one while another thread is inside one: build a
            reverb next to a playing one (a model swap on the control thread) with ``like``.

    Raises:
        ValueError: an argument is out of range, or ``like`` has another rate or decay.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("max_block", max_block)
    if not DECAY_MIN_S <= decay_s <= DECAY_MAX_S:
        raise ValueError(f"decay_s must be in [{DECAY_MIN_S}, {DECAY_MAX_S}] s, got {decay_s!r}")
    n_lines = REVERB_N_LINES
    delays: list[int] = []
    for i in range(n_lines):
        ratio = (REVERB_DELAY_MAX_S / REVERB_DELAY_MIN_S) ** (i / (n_lines - 1))
        d = _next_prime(round(REVERB_DELAY_MIN_S * ratio * sample_rate))
        while d in delays:
            d = _next_prime(d + 1)
        delays.append(d)
    predelay = round(REVERB_PREDELAY_S * sample_rate)
    sub = min(max_block, min(delays))
    keep = max(max(delays) + 1, predelay)
    n_rows = keep + max(_REVERB_SLACK, 4 * sub)

    delay_s = np.asarray(delays, np.float64) / sample_rate
    gains = 10.0 ** (-3.0 * delay_s / decay_s)
    t_nyq = REVERB_NYQUIST_DECAY_RATIO * decay_s
    nyq_gain = 10.0 ** (-3.0 * delay_s * (1.0 / t_nyq - 1.0 / decay_s))  # the damping alone
    a1 = (1.0 - nyq_gain) / 2.0
    a0 = 1.0 - a1
    feedback = _hadamard(n_lines)  # feedback[i, j]: line j's output into line i
    in_gain = np.ones(n_lines) / math.sqrt(n_lines)

    matrix = np.zeros((_N_GATHER, _N_COLS))
    matrix[:n_lines, :n_lines] = (feedback * (gains * a0)[None, :]).T
    matrix[n_lines : 2 * n_lines, :n_lines] = (feedback * (gains * a1)[None, :]).T
    matrix[_ROW_PREDELAYED, :n_lines] = in_gain
    matrix[_ROW_DRY, _COL_IN] = 1.0  # the input column is rewritten with itself

    # Flat index of gathered value (k, r) = (w + k − delay_r) · _N_COLS + column_r.
    cols = np.concatenate([np.arange(n_lines), np.arange(n_lines), [_COL_IN, _COL_IN]])
    lags = np.concatenate([delays, np.asarray(delays) + 1, [predelay, 0]])
    max_lag = int(lags.max())
    index = (max_lag + np.arange(sub)[:, None] - lags[None, :]) * _N_COLS + cols[None, :]

    state = ReverbState(
        sample_rate=sample_rate,
        decay_s=float(decay_s),
        delays=tuple(delays),
        predelay=predelay,
        sub_block=sub,
        nonfinite_blocks=0,
        _buf=np.zeros((n_rows, _N_COLS), np.float32),
        _flat=np.empty(0, np.float32),
        _pos=keep,
        _keep=keep,
        _matrix=matrix.astype(np.float32),
        _index=index.astype(np.intp),
        _max_lag=max_lag,
        _gathered=np.empty((sub, _N_GATHER), np.float32),
        _tap=np.resize(np.asarray([1.0, -1.0], np.float32), n_lines),
        _mix=-1.0,
    )
    state._flat = state._buf.reshape(-1)

    if like is not None:
        if (like.sample_rate, like.decay_s, like.delays) != (state.sample_rate, state.decay_s, state.delays):
            raise ValueError(
                f"like: a reverb at {like.sample_rate} Hz, {like.decay_s} s; this one is at "
                f"{sample_rate} Hz, {decay_s} s"
            )
        state._tap = like._tap.copy()
        return state
    # Normalise the wet tap to a unit-energy impulse response (energy left after decay_s < 1e-6).
    n_sim = int(decay_s * sample_rate) + predelay + max(delays)
    impulse = np.zeros(n_sim, np.float32)
    impulse[0] = 1.0
    reverb_block(impulse, 1.0, state, impulse)
    energy = float(np.dot(impulse.astype(np.float64), impulse.astype(np.float64)))
    state._tap = (state._tap / math.sqrt(energy)).astype(np.float32)
    state._mix = -1.0
    state.reset()
    return state


def reverb_block(x: np.ndarray, mix: float, state: ReverbState, out: np.ndarray) -> ReverbState:
    """Add the room to one block: ``out = (1 − mix) · x + mix · wet`` (= ``x + mix · (wet − x)``).

    ``mix = 0`` gives ``out == x`` exactly (the network still runs, so raising ``mix`` later
    brings in a tail that is already there); ``mix = 1`` is wet only.

    Args:
        x: input, float32 ``[B]``.
        mix: 0..1.
        state: from :func:`make_reverb`; updated in place.
        out: output, float32 ``[B]``; may be ``x``.

    Returns:
        ``state``. A block with NaN/inf (or values beyond ~1e18) clears the network, passes
        through unchanged (for the limiter to silence) and counts in ``state.nonfinite_blocks``.

    Raises:
        ValueError: ``mix`` is outside 0..1.
    """
    if mix != state._mix:
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in 0..1, got {mix!r}")
        state._set_mix(float(mix))
    if not math.isfinite(float(np.dot(x, x))):
        state.reset()
        state.nonfinite_blocks += 1
        if out is not x:
            np.copyto(out, x)
        return state
    buf = state._buf
    n_rows = buf.shape[0]
    sub = state.sub_block
    n = x.shape[0]
    start = 0
    while start < n:
        b = min(sub, n - start)
        w = state._pos
        if w + b > n_rows:
            keep = state._keep
            buf[:keep] = buf[w - keep : w]
            w = keep
        rows = buf[w : w + b]
        rows[:, _COL_IN] = x[start : start + b]  # before the gather: any pre-delay works
        gathered = state._gathered[:b]
        window = state._flat[(w - state._max_lag) * _N_COLS :]
        np.take(window, state._index[:b], out=gathered, mode="clip")
        np.dot(gathered, state._matrix, out=rows)
        np.copyto(out[start : start + b], rows[:, _COL_OUT])
        state._pos = w + b
        start += b
    return state


# ---------------------------------------------------------------------------------------------
# Limiter
# ---------------------------------------------------------------------------------------------

#: The gain aims this fraction below the ceiling so float32 rounding never reaches the hard clip.
_LIMITER_MARGIN = 2e-5
#: Attenuation (nepers) below which the gain snaps back to exactly 1 (transparent again).
_LIMITER_SNAP_NEPERS = 1e-7


@dataclass(eq=False)
class LimiterState:
    """Streaming state and scratch of :func:`limit_block`.

    Attributes:
        sample_rate: Hz.
        ceiling: linear, ``10^(ceiling_dbfs / 20)`` rounded to float32; the output never
            exceeds it.
        release_s: time constant of the gain's return to 1, s (exponential in dB).
        gain: gain applied to the last sample of the last block, linear (1 = transparent).
        clipped_samples: samples the hard ceiling touched (the safety net; normally 0).
        nonfinite_blocks: blocks with NaN/inf input; each one was output as silence and reset
            the state.
    """

    sample_rate: int
    ceiling: float
    release_s: float
    gain: float
    clipped_samples: int
    nonfinite_blocks: int
    #: Attenuation of the last sample, nepers (``gain = exp(−_atten)``).
    _atten: float
    _alpha: float
    #: The level the gain aims at: a hair below the ceiling, so rounding stays under it.
    _target: float
    #: ``[C]`` each: ``target``, ``ln target``, ``α^(−k)``, ``−α^k``, ``−α^(k+1)``.
    _target_arr: np.ndarray
    _log_target_arr: np.ndarray
    _inv_pow: np.ndarray
    _neg_pow: np.ndarray
    _neg_pow1: np.ndarray
    _atten_arr: np.ndarray
    _tmp: np.ndarray
    _mask: np.ndarray

    def reset(self) -> None:
        """Back to unity gain."""
        self._atten = 0.0
        self.gain = 1.0


def make_limiter(
    sample_rate: int,
    ceiling_dbfs: float = -0.3,
    release_s: float = 0.05,
    max_block: int = CHUNK,
) -> LimiterState:
    """A zero-latency peak limiter: instant attack, exponential release, hard ceiling behind it.

    Per sample, the attenuation that keeps the sample at the ceiling is
    ``a[n] = max(0, ln(|x[n]| / ceiling))`` nepers; the applied attenuation is
    ``e[n] = max(a[n], α·e[n−1])`` with ``α = exp(−1 / (release_s · sample_rate))``: the gain
    ``exp(−e[n])`` drops at once, on the sample that needs it, and returns to 1 exponentially in
    dB with time constant ``release_s``. ``|x[n]| · exp(−e[n]) ≤ ceiling`` by construction; a
    hard clip at the ceiling catches float rounding (counted in ``clipped_samples``). While the
    input stays below the ceiling and the gain is 1, the output is the input, bit for bit.

    Args:
        sample_rate: Hz.
        ceiling_dbfs: dBFS, in [−60, 0].
        release_s: s, in (0, 10].
        max_block: the longest block you will pass; sizes the scratch (capped at :data:`CHUNK`).

    Raises:
        ValueError: an argument is out of range.
    """
    _check_positive_int("sample_rate", sample_rate)
    _check_positive_int("max_block", max_block)
    if not -60.0 <= ceiling_dbfs <= 0.0:
        raise ValueError(f"ceiling_dbfs must be in [-60, 0] dBFS, got {ceiling_dbfs!r}")
    if not 0.0 < release_s <= 10.0:
        raise ValueError(f"release_s must be in (0, 10] s, got {release_s!r}")
    release_samples = release_s * sample_rate
    # α^(−k) must stay finite in float32 (< e^80) across one chunk.
    c = max(1, min(max_block, CHUNK, int(80.0 * release_samples)))
    alpha = math.exp(-1.0 / release_samples)
    k = np.arange(c, dtype=np.float64)
    ceiling = float(np.float32(10.0 ** (ceiling_dbfs / 20.0)))
    target = ceiling * (1.0 - _LIMITER_MARGIN)
    return LimiterState(
        sample_rate=sample_rate,
        ceiling=ceiling,
        release_s=float(release_s),
        gain=1.0,
        clipped_samples=0,
        nonfinite_blocks=0,
        _atten=0.0,
        _alpha=alpha,
        _target=target,
        _target_arr=np.full(c, target, np.float32),
        _log_target_arr=np.log(np.full(c, target, np.float32)),
        _inv_pow=(alpha ** (-k)).astype(np.float32),
        _neg_pow=(-(alpha**k)).astype(np.float32),
        _neg_pow1=(-(alpha ** (k + 1.0))).astype(np.float32),
        _atten_arr=np.zeros((), np.float32),
        _tmp=np.empty(c, np.float32),
        _mask=np.empty(c, np.bool_),
    )


def limit_block(x: np.ndarray, state: LimiterState, out: np.ndarray) -> LimiterState:
    """Limit one block so that ``|out| ≤ state.ceiling``.

    Args:
        x: input, float32 ``[B]``.
        state: from :func:`make_limiter`; updated in place (``gain``, ``clipped_samples``,
            ``nonfinite_blocks``).
        out: output, float32 ``[B]``; may be ``x``.

    Returns:
        ``state``. A block with NaN/inf is output as silence, resets the gain to 1 and counts in
        ``state.nonfinite_blocks``.
    """
    tmp_all = state._tmp
    c = tmp_all.shape[0]
    n = x.shape[0]
    atten = state._atten
    alpha = state._alpha
    target = state._target
    ceiling = state.ceiling
    start = 0
    while start < n:
        b = min(c, n - start)
        xs = x[start : start + b]
        os = out[start : start + b]
        tmp = tmp_all[:b]
        np.abs(xs, out=tmp)
        peak = float(np.maximum.reduce(tmp))  # NaN propagates
        if not math.isfinite(peak):
            out.fill(0.0)
            state.reset()
            state.nonfinite_blocks += 1
            return state
        if peak <= target:
            # No sample needs attenuation: only the release of earlier attenuation, if any.
            if atten == 0.0:
                if os is not xs:
                    np.copyto(os, xs)
            else:
                state._atten_arr.fill(atten)
                np.multiply(state._neg_pow1[:b], state._atten_arr, out=tmp)  # −e[k]
                np.exp(tmp, out=tmp)
                np.multiply(xs, tmp, out=os)
                atten *= alpha**b
                if atten < _LIMITER_SNAP_NEPERS:
                    atten = 0.0
        else:
            np.maximum(tmp, state._target_arr[:b], out=tmp)
            np.log(tmp, out=tmp)
            np.subtract(tmp, state._log_target_arr[:b], out=tmp)  # a[k] ≥ 0, nepers
            np.multiply(tmp, state._inv_pow[:b], out=tmp)
            carried = atten * alpha
            if tmp[0] < carried:
                tmp[0] = carried
            np.maximum.accumulate(tmp, out=tmp)
            np.multiply(tmp, state._neg_pow[:b], out=tmp)  # −e[k]
            atten = -float(tmp[b - 1])
            np.exp(tmp, out=tmp)
            np.multiply(xs, tmp, out=os)
            # Safety net: rounding can only matter for attenuations beyond ~40 dB.
            np.abs(os, out=tmp)
            if float(np.maximum.reduce(tmp)) > ceiling:
                mask = state._mask[:b]
                np.greater(tmp, ceiling, out=mask)
                state.clipped_samples += int(np.count_nonzero(mask))
                np.clip(os, -ceiling, ceiling, out=os)
        start += b
    state._atten = atten
    state.gain = math.exp(-atten)
    return state


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
