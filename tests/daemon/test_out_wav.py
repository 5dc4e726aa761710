"""`ddsp-device run --out FILE.wav` killed without warning: the file still plays back."""

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SR = 48000

pytestmark = pytest.mark.runtime


def declared_frames(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


def test_out_wav_header_is_valid_after_sigkill(tmp_path):
    out = tmp_path / "live.wav"
    (tmp_path / "state").mkdir()
    (tmp_path / "run").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "STATE_DIRECTORY": str(tmp_path / "state"),
        "RUNTIME_DIRECTORY": str(tmp_path / "run"),
        "DDSP_DEVICE_SYSTEM_CONFIG": str(tmp_path / "absent.toml"),
    }
    for key in ("DDSP_DEVICE_RUNTIME", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddsp_device.cli", "run", "--emulate", "--out", str(out),
         "-o", "panel.enabled=false", "-o", f"model.name={ROOT / 'models' / 'TestFixture.tflite'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        # Wait for the header to declare a second of audio: what the test waits for, not how long.
        deadline = time.monotonic() + 120  # only a bound on a hang
        while declared_frames(out) < SR and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1].decode()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    declared = declared_frames(out)
    on_disk = (out.stat().st_size - 44) // 2
    assert SR <= declared <= on_disk
    # at most one header interval (0.5 s) and a period behind what reached the file
    assert on_disk - declared <= SR // 2 + 2048
