"""The commands, run in-process through main() and as the installed console script."""

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from ddsp_device.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_system_config(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def wav_info(path):
    with wave.open(str(path)) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


@pytest.mark.runtime
def test_render_csv_to_wav(tmp_path, capsys):
    csv = write(tmp_path / "perf.csv", "time_s,f0_hz,loudness\n0,220,0\n0.1,220,0.8\n0.5,330,0.8\n1.0,330,0\n")
    out = tmp_path / "perf.wav"
    assert main(["render", "--controls", str(csv), "--out", str(out), "--tail", "0.5"]) == 0
    rate, ch, n = wav_info(out)
    assert (rate, ch) == (48000, 1) and n == int(1.5 * 48000)
    assert "peak" in capsys.readouterr().out


@pytest.mark.runtime
def test_render_at_44k1_and_other_period(tmp_path):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,440,0.5\n0.5,440,0.5\n")
    out = tmp_path / "p.wav"
    assert main(["render", "--controls", str(csv), "--out", str(out), "--sample-rate", "44100", "--period", "256", "--tail", "0"]) == 0
    assert wav_info(out)[0] == 44100


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("time,f0,loud\n0,1,1\n", "header must be time_s,f0_hz,loudness"),
        ("time_s,f0_hz,loudness\n", "no control rows"),
        ("time_s,f0_hz,loudness\n0,440,0.5\n0.1,abc,0.5\n", "line 3"),
        ("time_s,f0_hz,loudness\n0,440,0.5\n0,440,0.5\n", "line 3: time_s must increase"),
        ("time_s,f0_hz,loudness\n0,440,1.5\n", "line 2: loudness must be in 0..1"),
        ("time_s,f0_hz,loudness\n0,-3,0.5\n", "line 2: f0_hz must be > 0"),
        ("time_s,f0_hz,loudness\n0,440\n", "line 2: expected 3 columns"),
        ("time_s,f0_hz,loudness\n0,nan,0.5\n", "line 2: f0_hz is not a finite number"),
    ],
)
def test_render_rejects_bad_csv_with_one_line(tmp_path, capsys, text, message):
    csv = write(tmp_path / "bad.csv", text)
    out = tmp_path / "never.wav"
    assert main(["render", "--controls", str(csv), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_render_names_a_missing_model(tmp_path, capsys):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,440,0.5\n")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "x.wav"), "--model", "NoSuchModel"]) == 1
    err = capsys.readouterr().err
    assert "model 'NoSuchModel': not found" in err and "TestFixture" in err


def test_render_bad_model_file(tmp_path, capsys):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,440,0.5\n")
    bad = tmp_path / "Broken.tflite"
    bad.write_bytes(b"not a model at all")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "x.wav"), "--model", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Broken.tflite" in err[0]


def test_config_errors_are_collected(tmp_path, capsys):
    cfg = write(tmp_path / "c.toml", "[audio]\nperiod_size = 4096\nsample_rate = 22050\nperod = 2\n")
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "audio.period_size: must be between 32 and 2048, got 4096" in err
    assert "audio.sample_rate: must be one of 44100, 48000, got 22050" in err
    assert "did you mean 'periods'" in err
    assert "Traceback" not in err


def test_config_check_ok(capsys):
    assert main(["config", "check", "-o", "audio.period_size=256"]) == 0
    assert "period_size = 256" in capsys.readouterr().out


def test_render_refuses_bad_config_override(tmp_path, capsys):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,440,0.5\n")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "x.wav"), "-o", "synth.reverb_mix=3"]) == 2
    assert "synth.reverb_mix: must be between 0" in capsys.readouterr().err


def _share_above_4khz(path) -> float:
    """Energy above 4 kHz as a fraction of all of it."""
    from ddsp_device.audio.sinks import read_wav

    audio, rate = read_wav(path)
    spec = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    return float(spec[np.fft.rfftfreq(len(audio), 1.0 / rate) >= 4000.0].sum() / spec.sum())


@pytest.mark.runtime
def test_render_and_demo_honour_the_tone(tmp_path):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,330,0\n0.05,330,0.8\n0.8,440,0.8\n1.0,440,0\n")
    share = {}
    for tone in ("-1", "0", "1"):
        out = tmp_path / f"tone{tone}.wav"
        assert main(["render", "--controls", str(csv), "--out", str(out), "--tail", "0.2", "-o", f"synth.tone={tone}"]) == 0
        share[tone] = _share_above_4khz(out)
    assert share["-1"] < share["0"] < share["1"], share
    assert share["-1"] < 0.25 * share["1"], share
    dark, bright = tmp_path / "dark.wav", tmp_path / "bright.wav"
    assert main(["demo", "--out", str(dark), "--no-play", "-o", "synth.tone=-1"]) == 0
    assert main(["demo", "--out", str(bright), "--no-play", "-o", "synth.tone=1"]) == 0
    assert _share_above_4khz(dark) < 0.25 * _share_above_4khz(bright)


def test_render_refuses_a_tone_out_of_range(tmp_path, capsys):
    csv = write(tmp_path / "p.csv", "time_s,f0_hz,loudness\n0,440,0.5\n")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "x.wav"), "-o", "synth.tone=2"]) == 2
    assert "synth.tone: must be between -1.0 and 1.0, got 2.0 (from -o)" in capsys.readouterr().err


@pytest.mark.runtime
def test_bench_json_reports_every_figure(capsys):
    assert main(["bench", "--seconds", "0.5", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("rtf", "period_ms", "model_ms", "budget_ms", "latency_ms", "latency_parts_ms"):
        assert key in r
    assert set(r["period_ms"]) == {"p50", "p99", "p999", "max"}
    assert set(r["latency_parts_ms"]) == {"sensor_interval_ms", "control_hop_ms", "synthesis_lookahead_ms", "alsa_buffer_ms"}
    assert r["latency_ms"] == pytest.approx(sum(r["latency_parts_ms"].values()), abs=0.01)
    assert r["budget_ms"] == pytest.approx(1000 * 128 / 48000, rel=1e-3)
    assert 0 < r["rtf"] and r["period_ms"]["p50"] <= r["period_ms"]["max"]


@pytest.mark.runtime
def test_demo_writes_an_expressive_phrase(tmp_path):
    out = tmp_path / "demo.wav"
    csv = tmp_path / "phrase.csv"
    assert main(["demo", "--out", str(out), "--no-play", "--write-csv", str(csv)]) == 0
    rate, ch, n = wav_info(out)
    assert rate == 48000 and ch == 1 and n / rate >= 5.0
    # the phrase round-trips through render and gives the same audio
    again = tmp_path / "again.wav"
    assert main(["render", "--controls", str(csv), "--out", str(again)]) == 0
    from ddsp_device.audio.sinks import read_wav

    a, _ = read_wav(out)
    b, _ = read_wav(again)
    assert len(a) == len(b)
    # the CSV is written with 5 decimals: a rounded control can tip the int8 model's input onto the
    # next quantisation step (one output step is about 0.5 dB), so compare energies, not samples
    difference_db = 10 * np.log10(np.mean((a - b) ** 2) / np.mean(a**2))
    assert difference_db < -25.0, difference_db


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("ddsp-device")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ddsp_device.cli"]
    r = subprocess.run(cmd + ["render", "--controls", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o.wav")],
                       capture_output=True, text=True, env={"DDSP_DEVICE_SYSTEM_CONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "device")})
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr and "missing.csv" in r.stderr


# ----------------------------------------------------------------------------- bounded, atomic render
def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("text, extra, message", [
    ("time_s,f0_hz,loudness\n1e6,220,0.5\n", [], "line 2: time_s 1e+06"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n100,220,0.5\n", ["--max-seconds", "60"], "more than --max-seconds 60"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--tail", "1e7"], "--tail"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--tail", "nan"], "--tail"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--tail", "inf"], "--tail"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--tail", "-1"], "--tail"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--max-seconds", "1e9"], "--max-seconds"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--max-seconds", "0"], "--max-seconds"),
    ("time_s,f0_hz,loudness\n0,220,0.5\n", ["--period", "1"], "--period: must be between 32 and 2048"),
])
def test_render_refuses_an_unbounded_length_with_one_line(tmp_path, capsys, text, extra, message):
    csv = write(tmp_path / "p.csv", text)
    out = tmp_path / "o.wav"
    assert main(["render", "--controls", str(csv), "--out", str(out), *extra]) == 2
    assert message in one_line_error(capsys)
    assert not out.exists()


def test_period_range_is_the_configs_everywhere(capsys):
    """render, bench and audio.period_size share one range (the config schema's)."""
    from ddsp_device.config import SCHEMA

    key = SCHEMA["audio"].keys["period_size"]
    for argv in (["bench", "--seconds", "0.1"], ["render", "--controls", "x.csv", "--out", "x.wav"]):
        for period in (key.min - 1, key.max + 1):
            assert main([*argv, "--period", str(period)]) == 2
            assert f"between {key.min} and {key.max}" in one_line_error(capsys)


class _PullingEngine:
    """Pulls one control frame per hop as the engine does, makes silence: the render loop alone."""

    sample_rate = 48000
    hop = 128

    def __init__(self):
        self.frame = 0
        self.pending = 0

    def render(self, out, controls):
        while self.pending < out.shape[0]:
            controls(self.frame)
            self.frame += 1
            self.pending += self.hop
        self.pending -= out.shape[0]
        out.fill(0.0)
        return out


def test_render_memory_does_not_grow_with_the_length(tmp_path):
    """Controls are made and audio written as the render goes: 1 min and 10 min peak alike."""
    import tracemalloc

    from ddsp_device.audio.sinks import WavSink
    from ddsp_device.cli import render_performance
    from ddsp_device.performance import validate

    peaks = {}
    for seconds in (60.0, 600.0):
        performance = validate([0.0, seconds / 2, seconds], [220.0, 440.0, 330.0], [0.5, 0.9, 0.5])
        tracemalloc.start()
        try:
            engine = _PullingEngine()
            frames = performance.frames(engine.hop, engine.sample_rate, tail_s=0.0)
            with WavSink(tmp_path / f"{seconds:g}.wav", engine.sample_rate, max_block=1024, atomic=True) as sink:
                result = render_performance(engine, frames, sink, 1024)
            _, peaks[seconds] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result["samples"] == int(seconds * 48000)
        assert wav_info(tmp_path / f"{seconds:g}.wav")[2] == int(seconds * 48000)
    assert peaks[600.0] < peaks[60.0] + 16 * 1024, peaks


def test_frame_controls_match_the_whole_curve_computed_at_once():
    from ddsp_device.performance import validate

    performance = validate([0.0, 1.0, 2.5], [220.0, 880.0, 330.0], [0.0, 1.0, 0.25])
    frames = performance.frames(128, 48000, tail_s=0.5)
    f0_hz, loudness = frames.arrays()
    assert f0_hz.shape == (frames.n_frames,)
    pulled = np.array([frames(i) for i in range(frames.n_frames + 3)])  # past the end: the last
    assert np.array_equal(pulled[: frames.n_frames, 0], f0_hz) and np.array_equal(pulled[: frames.n_frames, 1], loudness)
    assert np.array_equal(pulled[-1], pulled[frames.n_frames - 1]) and loudness[-1] == 0.0


@pytest.mark.runtime
def test_render_refuses_to_overwrite_its_input(tmp_path, capsys):
    csv = write(tmp_path / "a.csv", "time_s,f0_hz,loudness\n0,220,0.5\n0.2,220,0.5\n")
    before = csv.read_bytes()
    (tmp_path / "sub").mkdir()
    for out in (csv, tmp_path / "sub" / ".." / "a.csv"):
        assert main(["render", "--controls", str(csv), "--out", str(out)]) == 2
        assert "is also --controls" in one_line_error(capsys)
    model = tmp_path / "m.tflite"
    model.write_bytes((ROOT / "models" / "TestFixture.tflite").read_bytes())
    assert main(["render", "--controls", str(csv), "--out", str(model), "--model", str(model)]) == 2
    assert "is also the model file" in one_line_error(capsys)
    assert csv.read_bytes() == before and model.read_bytes() == (ROOT / "models" / "TestFixture.tflite").read_bytes()


@pytest.mark.runtime
def test_render_out_of_range_pitch_warns_once(tmp_path, capsys):
    csv = write(tmp_path / "a.csv", "time_s,f0_hz,loudness\n0,220,0.5\n0.1,1e9,0.5\n0.2,2e9,0.5\n0.3,1,0.5\n")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "a.wav"), "--model", "TestFixture"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "line 3: f0_hz 1e+09" in warnings[0] and "range" in warnings[0]


@pytest.mark.runtime
def test_render_reads_a_csv_with_a_byte_order_mark(tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbftime_s,f0_hz,loudness\r\n0,220,0.5\r\n0.2,220,0.5\r\n")
    assert main(["render", "--controls", str(csv), "--out", str(tmp_path / "a.wav"), "--model", "TestFixture"]) == 0


def _console(tmp_path):
    exe = Path(sys.executable).with_name("ddsp-device")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ddsp_device.cli"]
    env = {"DDSP_DEVICE_SYSTEM_CONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "device")}
    for key in ("DDSP_DEVICE_RUNTIME",):
        if key in os.environ:
            env[key] = os.environ[key]
    return cmd, env


@pytest.mark.runtime
def test_render_stopped_by_sigterm_leaves_the_old_file(tmp_path):
    """SIGTERM mid-render: exit 143, one line, the previous file untouched, no temp file left."""
    import signal
    import time

    csv = write(tmp_path / "long.csv", "time_s,f0_hz,loudness\n0,220,0.5\n3000,220,0.5\n")
    out = tmp_path / "out.wav"
    out.write_bytes(b"the previous take")
    cmd, env = _console(tmp_path)
    proc = subprocess.Popen(cmd + ["render", "--controls", str(csv), "--out", str(out), "--model", "TestFixture"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # only a bound on a hang: the test waits for the file
        while not list(tmp_path.glob(".out.wav.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "not written" in lines[0] and "Traceback" not in stderr
    assert out.read_bytes() == b"the previous take"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.csv", "out.wav"]
