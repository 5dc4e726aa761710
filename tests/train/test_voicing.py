"""``voicing``: the soundfont-to-real EQ is measured note by note and recovers a known colour."""

import numpy as np
import pytest

pytest.importorskip("scipy")
sf = pytest.importorskip("soundfile")

from ddsp_device.train import prepare as prep  # noqa: E402
from ddsp_device.train import voicing  # noqa: E402

SR = 48000


def harmonic_note(f0_hz, seconds=2.0):
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * f0_hz * t
    audio = sum(np.sin(k * phase) / k for k in range(1, int(20000 / f0_hz)))
    return (0.2 * audio / np.abs(audio).max()).astype(np.float32)


def test_note_names():
    assert voicing.note_to_midi("A4") == 69 and voicing.note_to_midi("C#5") == 73
    assert voicing.note_to_midi("Bb3") == 58 and voicing.note_to_midi("G3") == 55
    assert voicing.note_to_midi("violin_0001") is None and voicing.note_to_midi("H2") is None


def test_band_shares_leave_out_bands_below_the_fundamental():
    shares = voicing.band_shares_db(harmonic_note(440.0), SR, 440.0)
    centres = np.array(voicing.BAND_CENTRES_HZ)
    assert np.all(np.isnan(shares[centres * 2 ** (1 / 6) <= 396.0]))
    assert np.all(np.isfinite(shares[centres >= 500.0]))
    assert 10 * np.log10(np.sum(10 ** (shares[np.isfinite(shares)] / 10))) == pytest.approx(0.0, abs=0.01)


def test_measure_eq_recovers_a_known_colour(tmp_path):
    real, soundfont = tmp_path / "real", tmp_path / "sf"
    real.mkdir(), soundfont.mkdir(), (tmp_path / "empty").mkdir()
    colour = prep.parse_eq("1000:0,4000:-8")  # the "soundfont" is 8 dB duller above 4 kHz
    for note in ("G3", "D4", "A4", "E5", "B5"):
        audio = harmonic_note(440.0 * 2 ** ((voicing.note_to_midi(note) - 69) / 12))
        sf.write(real / f"{note}.wav", audio, SR)
        sf.write(soundfont / f"{note}.wav", prep.apply_eq(audio, SR, colour), SR)
    sf.write(soundfont / "extra.wav", harmonic_note(300.0), SR)  # unpaired: ignored
    result = voicing.measure_eq(real, soundfont)
    assert result["notes"] == ["G3", "D4", "A4", "E5", "B5"]
    curve = dict((hz, db) for hz, db in result["points"])
    # shares are relative to the energy above f0, so the lows read slightly positive; the
    # difference between highs and lows is the colour's 8 dB
    assert curve[8000.0] - curve[1000.0] == pytest.approx(8.0, abs=1.0)
    assert abs(curve[1000.0] - curve[793.7]) < 1.0
    assert voicing.format_points([[1000.0, 0.5], [4000.0, -3.0]]) == "1000:0.5,4000:-3"
    with pytest.raises(voicing.VoicingError, match="no note-named files"):
        voicing.measure_eq(real, tmp_path / "empty")
