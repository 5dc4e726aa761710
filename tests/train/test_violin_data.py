"""Violin phrases: the MIDI we write, and (with fluidsynth) that the rendering plays those notes."""

import json

import numpy as np
import pytest

from ddsp_device.train import violin_data as vd


def read_smf(blob: bytes):
    """Minimal SMF reader for what :func:`vd.phrase_to_midi` writes: ``(division, [(tick, bytes)])``."""
    assert blob[:4] == b"MThd"
    fmt, ntracks, division = (int.from_bytes(blob[i : i + 2], "big") for i in (8, 10, 12))
    assert (fmt, ntracks) == (0, 1) and blob[14:18] == b"MTrk"
    end = 22 + int.from_bytes(blob[18:22], "big")
    assert end == len(blob)
    pos, tick, events = 22, 0, []
    while pos < end:
        delta = 0
        while True:
            byte = blob[pos]
            pos += 1
            delta = (delta << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        tick += delta
        status = blob[pos]
        if status == 0xFF:
            length = blob[pos + 2]
            message = blob[pos : pos + 3 + length]
        else:
            message = blob[pos : pos + (2 if status & 0xF0 in (0xC0, 0xD0) else 3)]
        pos += len(message)
        events.append((tick, bytes(message)))
    return division, events


def simple_phrase():
    notes = [vd.Note(0.1, 0.6, 55, 90), vd.Note(0.7, 0.6, 74, 90), vd.Note(1.3, 0.9, 81, 100),
             vd.Note(2.2, 1.2, 88, 100)]
    n_bend = int(4.0 / vd.BEND_STEP_S)
    bend = np.zeros(n_bend)
    t = np.arange(n_bend) * vd.BEND_STEP_S
    vibrato = (t >= 1.5) & (t < 2.2)
    bend[vibrato] = 0.3 * np.sin(2 * np.pi * 5.5 * (t[vibrato] - 1.5))  # ±30 cents
    slide = (t >= 2.2) & (t < 3.4)
    bend[slide] = 2.0 * np.clip((t[slide] - 2.6) / 0.3, 0, 1)  # E6 → F#6 by pitch bend
    return vd.Phrase("test", notes, bend, np.full(int(4.0 / vd.EXPRESSION_STEP_S), 110.0))


def test_midi_sets_the_bend_range_before_any_bend_or_note():
    division, events = read_smf(vd.phrase_to_midi(simple_phrase()))
    assert division == vd.TICKS_PER_QUARTER
    messages = [m for _, m in events]
    rpn = [bytes([0xB0, 101, 0]), bytes([0xB0, 100, 0]), bytes([0xB0, 6, vd.BEND_RANGE_SEMITONES])]
    positions = [messages.index(m) for m in rpn]
    assert positions == sorted(positions)
    first_bend = next(i for i, m in enumerate(messages) if m[0] == 0xE0)
    first_note = next(i for i, m in enumerate(messages) if m[0] == 0x90)
    assert positions[-1] < min(first_bend, first_note)
    assert bytes([0xC0, vd.GM_VIOLIN_PROGRAM]) in messages
    assert bytes([0xB0, 91, 0]) in messages and bytes([0xB0, 93, 0]) in messages  # no reverb, chorus
    assert messages[-1] == b"\xff\x2f\x00"
    ticks = [tick for tick, _ in events]
    assert ticks == sorted(ticks)
    ons = [(tick, m[1]) for tick, m in events if m[0] == 0x90]
    assert ons == [(100, 55), (700, 74), (1300, 81), (2200, 88)]  # 1 tick = 1 ms


def test_bend_values():
    assert vd.bend_value(0.0) == 8192
    assert vd.bend_value(vd.BEND_RANGE_SEMITONES) == 16383
    assert vd.bend_value(-vd.BEND_RANGE_SEMITONES) == 0
    assert vd.bend_value(1.0, 2) == 8192 + 4096


def test_silent_keys_are_played_from_a_neighbour_with_bend():
    phrase = vd.Phrase("x", [vd.Note(0.0, 0.5, 94, 90)], np.zeros(200), np.full(40, 100.0))
    _, events = read_smf(vd.phrase_to_midi(phrase, silent_keys=[94]))
    ons = [m for _, m in events if m[0] == 0x90]
    assert ons == [bytes([0x90, 95, 90])]
    bends = [(tick, m[1] | (m[2] << 7)) for tick, m in events if m[0] == 0xE0]
    assert bends[0] == (0, vd.bend_value(-1.0))


@pytest.mark.parametrize("kind", vd.PHRASE_KINDS)
def test_phrases_are_monophonic_in_range_and_deterministic(kind):
    for seed in range(5):
        phrase = vd.make_phrase(kind, np.random.default_rng([seed, 1]))
        again = vd.make_phrase(kind, np.random.default_rng([seed, 1]))
        assert vd.phrase_to_midi(phrase) == vd.phrase_to_midi(again)
        pitches = [n.pitch for n in phrase.notes]
        assert vd.LOWEST_NOTE <= min(pitches) and max(pitches) <= vd.HIGHEST_NOTE
        for a, b in zip(phrase.notes, phrase.notes[1:]):
            assert b.start_s >= a.end_s - 1e-9
        assert np.all((phrase.expression >= 0) & (phrase.expression <= 127))
        assert np.max(np.abs(phrase.bend_semitones)) < vd.BEND_RANGE_SEMITONES


def test_phrase_f0_is_the_note_plus_bend():
    phrase = simple_phrase()
    f0 = vd.phrase_f0_hz(phrase, [0.05, 0.4, 3.3])
    assert f0[0] == 0.0
    assert f0[1] == pytest.approx(196.0, rel=1e-3)
    assert f0[2] == pytest.approx(vd.midi_to_hz(90), rel=1e-3)


def needs_fluidsynth():
    if vd.find_fluidsynth() is None:
        pytest.skip("fluidsynth is not installed (Debian: apt-get install fluidsynth)")
    try:
        return vd.find_soundfont()
    except vd.RenderError:
        pytest.skip("FluidR3_GM.sf2 is not installed (Debian: apt-get install fluid-soundfont-gm)")


def test_rendered_phrase_follows_the_midi_notes(tmp_path):
    soundfont = needs_fluidsynth()
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("parselmouth")
    from ddsp_device.train import features

    phrase = simple_phrase()
    wav = tmp_path / "phrase.wav"
    vd.render_phrase(phrase, wav, soundfont, sample_rate=48000)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == 48000 and audio.ndim == 1
    assert audio.shape[0] == pytest.approx(phrase.duration_s * rate, abs=2)
    f0, confidence = features.track_f0(audio, rate, 128)
    times = np.arange(f0.size) * 128 / rate
    expected = vd.phrase_f0_hz(phrase, times)
    for note in phrase.notes:
        steady = (times > note.start_s + 0.1) & (times < note.end_s - 0.05) & (confidence > 0.5)
        assert steady.sum() > 50
        cents = 1200 * np.log2(f0[steady] / expected[steady])
        # FluidR3's samples are tuned within about ±30 cents
        assert abs(np.median(cents)) < 50, f"MIDI {note.pitch}: {np.median(cents):.0f} cents off"
    vibrato = (times > 1.6) & (times < 2.15) & (confidence > 0.5)
    assert np.std(1200 * np.log2(f0[vibrato])) > 10  # the vibrato is heard (±30 cents)
    after_slide = (times > 3.0) & (times < 3.35) & (confidence > 0.5)
    assert abs(np.median(1200 * np.log2(f0[after_slide] / vd.midi_to_hz(90)))) < 50


def test_render_violin_dataset_records_provenance(tmp_path):
    needs_fluidsynth()
    sf = pytest.importorskip("soundfile")
    pytest.importorskip("tqdm")
    summary = vd.render_violin_dataset(tmp_path, minutes=0.1, seed=5, progress=False)
    sources = json.loads((tmp_path / vd.SOURCES_FILE).read_text())
    assert summary.n_phrases == len(sources["phrases"]) >= 1
    assert "MIT" in sources["licence"] and sources["soundfont"]["licence"] == "MIT"
    assert sources["soundfont"]["file"] == "FluidR3_GM.sf2"
    assert "Sample-library renderings" in sources["provenance"]
    assert sources["renderer"]["reverb"] is False and sources["generator"]["seed"] == 5
    for entry in sources["phrases"]:
        info = sf.info(tmp_path / entry["file"])
        assert info.samplerate == 48000 and info.channels == 1
        assert (tmp_path / entry["midi"]).is_file()
