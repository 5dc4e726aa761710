"""``train.baselines``: the sawtooth's harmonics and loudness, the soundfont's MIDI, and its render."""

from __future__ import annotations

import numpy as np
import pytest

from ddsp_device.train import baselines
from ddsp_device.train.baselines import (SoundfontBaseline, SoundfontSettings, sawtooth, sawtooth_wave,
                                         soundfont_phrase, target_db)
from ddsp_device.train.features import loudness_db, normalise_loudness
from ddsp_device.train.violin_data import BEND_STEP_S, RenderError, midi_to_hz

SR, HOP = 48000, 128
FRAME_RATE = SR / HOP


def test_sawtooth_wave_is_the_harmonic_sum_below_nyquist():
    f0_hz = 5000.0  # k = 1..4 below 24 kHz; k = 5 (25 kHz) would alias to 23 kHz
    n = np.arange(SR)
    wave = sawtooth_wave(np.full(SR, f0_hz), SR)
    phase = 2 * np.pi * f0_hz * (n + 1) / SR  # φ(s) sums f0 up to and including s
    expected = sum(np.sin(k * phase) / k for k in range(1, 5))
    assert np.max(np.abs(wave - expected)) < 1e-6  # the phase is a running sum: its rounding error grows


def test_sawtooth_wave_peaks_at_harmonics_with_amplitudes_one_over_k():
    wave = sawtooth_wave(np.full(SR, 1000.0), SR)
    amplitude = np.abs(np.fft.rfft(wave)) * 2 / SR  # 1 Hz bins, whole cycles
    for k in range(1, 24):
        assert amplitude[1000 * k] == pytest.approx(1.0 / k, rel=1e-6)
    harmonics = np.zeros(amplitude.size, bool)
    harmonics[1000 : 24000 : 1000] = True
    assert np.max(amplitude[~harmonics]) < 1e-9  # nothing else, nothing aliased
    assert not np.any(sawtooth_wave(np.zeros(100), SR))  # f0 ≤ 0 is silent


def test_sawtooth_wave_masks_each_harmonic_as_it_crosses_nyquist():
    """A glide 3 → 7 kHz: sampled per sample, the short-time spectrum never holds a partial above
    the current 7th/3rd harmonic's Nyquist limit (no folded partials come down)."""
    f0_hz = np.linspace(3000.0, 7000.0, SR)
    wave = sawtooth_wave(f0_hz, SR)
    block = 2048
    for start in range(0, SR - block, 8 * block):
        f0 = f0_hz[start : start + block]
        n_partials = int(np.floor((SR / 2 - 1e-9) / f0.max()))
        spectrum = np.abs(np.fft.rfft(wave[start : start + block] * np.hanning(block)))
        freqs = np.fft.rfftfreq(block, 1 / SR)
        lowest = freqs < 0.9 * f0.min()  # below the fundamental: only folded partials could land here
        assert 20 * np.log10(spectrum[lowest].max() / spectrum.max()) < -60, (start, n_partials)


def test_sawtooth_follows_the_loudness_curve():
    n_frames = int(2.0 * FRAME_RATE)
    t = np.arange(n_frames) / FRAME_RATE
    f0_hz = 220.0 * 2 ** (t / 2) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    loudness = np.clip(0.6 + 0.25 * np.sin(2 * np.pi * t), 0, 1)
    audio = sawtooth(f0_hz, loudness, SR, HOP)
    assert audio.shape == (n_frames * HOP,) and audio.dtype == np.float32
    error_db = np.abs(loudness_db(audio, SR, HOP) - target_db(loudness))
    assert np.mean(error_db) < 0.05 and np.max(error_db[10:-10]) < 0.5
    assert np.allclose(normalise_loudness(loudness_db(audio, SR, HOP))[10:-10], loudness[10:-10], atol=0.01)


def controls(pieces):
    """Concatenate ``(seconds, midi_pitch, loudness)`` pieces into per-frame ``f0_hz``, ``loudness``."""
    f0, loud = [], []
    for seconds, pitch, level in pieces:
        n = int(round(seconds * FRAME_RATE))
        f0.append(np.full(n, midi_to_hz(pitch)))
        loud.append(np.full(n, level))
    return np.concatenate(f0), np.concatenate(loud)


def test_soundfont_phrase_a_note_per_voiced_stretch():
    f0, loud = controls([(0.2, 69, 0.0), (1.0, 69, 0.8), (0.3, 69, 0.0), (0.8, 64.3, 0.5), (0.2, 64.3, 0.0)])
    phrase = soundfont_phrase(f0, loud, SR, HOP)
    assert [(n.pitch, n.velocity) for n in phrase.notes] == [(69, round(127 * 0.8)), (64, round(127 * 0.5))]
    assert phrase.notes[0].start_s == pytest.approx(0.2, abs=BEND_STEP_S)
    assert phrase.notes[0].end_s == pytest.approx(1.2, abs=BEND_STEP_S)
    assert phrase.notes[1].start_s == pytest.approx(1.5, abs=BEND_STEP_S)
    assert phrase.duration_s == pytest.approx(f0.size / FRAME_RATE, abs=BEND_STEP_S)
    i = int(round(2.0 / BEND_STEP_S))  # inside the second note: bent 0.3 semitones up from its key
    assert phrase.bend_semitones[i] == pytest.approx(0.3, abs=1e-6)
    assert phrase.expression.max() == 127 and phrase.volume == 127  # each note's loudest frame: CC11 127
    assert soundfont_phrase(np.full(100, 440.0), np.zeros(100), SR, HOP) is None  # nothing voiced


def test_soundfont_phrase_expression_follows_the_loudness_in_db():
    n = int(round(1.0 * FRAME_RATE))
    loud = np.linspace(0.5, 0.75, n)  # −40 … −20 dB: CC11 from 127 · 10^(−20/40) up to 127
    phrase = soundfont_phrase(np.full(n, 440.0), loud, SR, HOP)
    expected = 127 * 10 ** (np.interp(np.arange(phrase.expression.size) * 0.02, np.arange(n) / FRAME_RATE,
                                      target_db(loud) + 20.0) / 40.0)
    assert np.allclose(phrase.expression, expected, atol=0.5)


def test_soundfont_phrase_retriggers_only_where_f0_leaves_the_bend_range():
    # a leap of 14 semitones held for 0.5 s: a new note; a 5-frame octave blip: bent, not retriggered
    f0, loud = controls([(0.5, 60, 0.8), (0.5, 74, 0.8), (0.3, 74, 0.8)])
    f0[int(0.2 * FRAME_RATE) : int(0.2 * FRAME_RATE) + 5] *= 2.0
    phrase = soundfont_phrase(f0, loud, SR, HOP)
    assert [n.pitch for n in phrase.notes] == [60, 74]
    assert phrase.notes[1].start_s == pytest.approx(0.5, abs=BEND_STEP_S)
    assert np.max(np.abs(phrase.bend_semitones)) <= SoundfontSettings().bend_range_semitones


def test_soundfont_phrase_avoids_silent_keys():
    f0, loud = controls([(0.5, 94, 0.8)])  # FluidR3's violin has a hole at A#6
    phrase = soundfont_phrase(f0, loud, SR, HOP, silent_keys=[94])
    assert phrase.notes[0].pitch in (93, 95)
    assert phrase.bend_semitones[10] == pytest.approx(94 - phrase.notes[0].pitch)


@pytest.fixture(scope="module")
def soundfont_baseline():
    try:
        return SoundfontBaseline()
    except RenderError as err:
        pytest.skip(f"no soundfont baseline here: {err}")


def test_soundfont_render_plays_the_pitch_at_the_clip_loudness(soundfont_baseline):
    n = int(round(1.5 * FRAME_RATE))
    t = np.arange(n) / FRAME_RATE
    loud = np.clip(0.7 + 0.1 * np.sin(2 * np.pi * t / 1.5), 0, 1)
    loud[:20] = 0.0
    audio = soundfont_baseline.render(np.full(n, 440.0), loud, SR, HOP)
    assert audio.shape == (n * HOP,) and np.all(np.isfinite(audio))
    sounding = loud > 0
    error_db = np.abs(loudness_db(audio, SR, HOP) - target_db(loud))[sounding]
    assert np.median(error_db) < 1.5, np.median(error_db)
    tail = audio[int(0.5 * SR) :]
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(tail.size), 1 << 18))
    peak_hz = np.argmax(spectrum[: int(3000 * (1 << 18) / SR)]) * SR / (1 << 18)
    k = max(1, round(peak_hz / 440.0))
    assert abs(1200 * np.log2(peak_hz / (k * 440.0))) < 35  # FluidR3's samples: within ±30 cents
    assert soundfont_baseline.describe()["program"] == 41


def test_soundfont_baseline_reports_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(RenderError, match="no soundfont"):
        SoundfontBaseline(tmp_path / "none.sf2", fluidsynth="/bin/true")
    monkeypatch.setattr(baselines, "find_fluidsynth", lambda: None)
    with pytest.raises(RenderError, match="fluidsynth not found"):
        SoundfontBaseline()
