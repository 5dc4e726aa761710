"""`ddsp-device run` end to end: a subprocess, emulated sensors, real libasound (a `file` PCM),
systemd's notify socket read by the test, reloads with a good and a broken model, SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "models"
SR = 48000

pytest.importorskip("alsaaudio")
pytestmark = pytest.mark.runtime


class Daemon:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.raw = tmp_path / "capture.raw"
        home = tmp_path / "home"
        home.mkdir()
        (home / ".asoundrc").write_text(
            f'pcm.ddsptest {{\n type file\n slave.pcm "null"\n file "{self.raw}"\n format "raw"\n}}\n'
        )
        self.config = tmp_path / "config.toml"
        self.write_config(str(ROOT / "models" / "TestFixture.tflite"))
        self.notify_path = tmp_path / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        # systemd drains its notify socket at once; so must the test, or the daemon's
        # non-blocking sends find it full
        self._reading = True
        self._reader = threading.Thread(target=self._read_notify, daemon=True)
        self._reader.start()
        (tmp_path / "state").mkdir()
        (tmp_path / "run").mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NOTIFY_SOCKET": str(self.notify_path),
            "WATCHDOG_USEC": "1000000",
            "STATE_DIRECTORY": str(tmp_path / "state"),
            "RUNTIME_DIRECTORY": str(tmp_path / "run"),
            "DDSP_DEVICE_SYSTEM_CONFIG": str(tmp_path / "absent.toml"),
        }
        for key in ("DDSP_DEVICE_RUNTIME", "PYTHONPATH"):
            if key in os.environ:
                env[key] = os.environ[key]
        self.log = (tmp_path / "daemon.log").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ddsp_device.cli", "run", "--emulate", "--config", str(self.config)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def _read_notify(self) -> None:
        while self._reading:
            try:
                self.messages.extend(self.notify.recv(4096).decode().splitlines())
            except socket.timeout:
                pass
            except OSError:
                return

    def write_config(self, model: str) -> None:
        self.config.write_text(
            f'[audio]\ndevice = "ddsptest"\npace = true\n[model]\nname = "{model}"\n[panel]\nenabled = false\n'
        )

    # The timeouts below only bound a hang: every wait returns as soon as its condition holds, so
    # a slow machine takes longer, never fails for it.
    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(m == text or m.startswith(text) for m in list(self.messages)):
                return
            assert self.proc.poll() is None or text == "STOPPING=1", f"daemon exited early:\n{self.logtext()}"
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} from the daemon within {timeout_s} s; got {self.messages}\n{self.logtext()}")

    def logtext(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def wait_until(self, condition, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert self.proc.poll() is None, f"daemon exited early:\n{self.logtext()}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s\n{self.logtext()}"
            time.sleep(0.05)

    def captured_s(self) -> float:
        return self.raw.stat().st_size / 2 / SR if self.raw.exists() else 0.0

    def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.logtext():
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log:\n{self.logtext()}")

    def status(self) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "ddsp_device.cli", "status", "--json", "--socket", str(self.tmp / "run" / "status.sock")],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def audio(self) -> np.ndarray:
        return np.fromfile(self.raw, dtype="<i2").astype(np.float32) / 32767.0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reading = False
        self._reader.join(1.0)
        self.notify.close()
        self.log.close()


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.close()


def peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=8 * len(x)))
    i = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[i - 1 : i + 2] + 1e-30)
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * SR / (8 * len(x))


def max_jump(x):
    return float(np.max(np.abs(np.diff(x)))) if len(x) > 1 else 0.0


def test_run_plays_reloads_and_stops_cleanly(daemon):
    from ddsp_device.config import load_config
    from ddsp_device.controls.bus import SYSTEM_CLOCK
    from ddsp_device.controls.tools import EmulatedPlayer

    # READY=1 after the first period, then watchdog pings from audio progress
    daemon.wait_for("READY=1")
    daemon.wait_for("WATCHDOG=1")
    assert any(m.startswith("STATUS=playing") for m in daemon.messages)
    daemon.wait_until(lambda: daemon.captured_s() > 3.5, "3.5 s of audio")

    # the pitch the emulated ribbon plays is what comes out
    audio = daemon.audio()
    expected = EmulatedPlayer(load_config(None, []), SYSTEM_CLOCK).gesture_f0_hz()
    heard = []
    for start in np.arange(0.6, len(audio) / SR - 0.5, 0.25):
        seg = audio[int(start * SR) : int((start + 0.25) * SR)]
        if np.sqrt(np.mean(seg**2)) > 0.01:
            heard.append(peak_hz(seg))
    assert heard, "nothing audible in the capture"
    cents = [min(abs(1200 * np.log2(h / e)) for e in expected) for h in heard]
    assert sorted(cents)[len(cents) // 2] < 5.0, (heard, expected)  # most windows sit on a gesture note

    # SIGHUP with a valid new model: crossfade, audio continues without a jump or a gap
    before = daemon.status()
    assert before["model"].endswith("TestFixture.tflite")
    samples_before = len(daemon.audio())
    daemon.write_config(str(FIXTURES / "float_window.tflite"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("switching to model")
    daemon.wait_for("RELOADING=1")
    daemon.wait_until(lambda: daemon.status()["counters"]["crossfades"] >= 1, "the crossfade")
    after = daemon.status()
    assert after["model"].endswith("float_window.tflite")
    swapped_at = daemon.captured_s()
    daemon.wait_until(lambda: daemon.captured_s() > swapped_at + 0.6, "audio after the swap")
    audio = daemon.audio()
    steady = audio[samples_before - SR : samples_before]
    around = audio[samples_before : samples_before + int(0.5 * SR)]
    assert max_jump(around) < 2.0 * max_jump(steady) + 0.02, "a click at the model swap"
    rms_10ms = np.sqrt(np.mean(around[: len(around) // 480 * 480].reshape(-1, 480) ** 2, axis=1))
    assert rms_10ms.min() > 0.2 * np.median(rms_10ms), "a gap at the model swap"

    # SIGHUP with a broken model: refused with the reason, the old model keeps playing
    broken = daemon.tmp / "Broken.tflite"
    broken.write_bytes((ROOT / "models" / "TestFixture.tflite").read_bytes()[:3000])
    daemon.write_config(str(broken))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("refused")
    refused_at = daemon.captured_s()
    daemon.wait_until(lambda: daemon.captured_s() > refused_at + 0.6, "audio after the refusal")
    still = daemon.status()
    assert still["model"].endswith("float_window.tflite")
    assert still["counters"]["reloads_refused"] >= 1
    tail = daemon.audio()[-SR // 2 :]
    assert np.sqrt(np.mean(tail**2)) > 0.01, "silence after a refused reload"

    # SIGTERM: exit 0, the file ends in a fade-out of at most 20 ms
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(60) == 0, daemon.logtext()
    daemon.wait_for("STOPPING=1")
    audio = daemon.audio()
    end = np.abs(audio[-int(0.1 * SR) :])
    loud = np.flatnonzero(end > 0.02)
    assert loud.size, "not playing before SIGTERM"
    silent_from = loud[-1] + 1
    assert np.abs(end[silent_from:]).max(initial=0.0) < 0.02
    # from the last loud sample to digital near-silence within 20 ms (+ the reverb's quiet tail)
    fade_start = len(end) - 1 - np.flatnonzero(end[::-1] > 0.5 * end.max())[0]
    assert (silent_from - fade_start) / SR <= 0.025
    assert "Traceback" not in daemon.logtext()


def test_run_without_a_usable_device_says_so(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), DDSP_DEVICE_SYSTEM_CONFIG=str(tmp_path / "absent.toml"),
               STATE_DIRECTORY=str(tmp_path), RUNTIME_DIRECTORY=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "ddsp_device.cli", "run", "--emulate", "-o", 'audio.device="nosuchpcm"',
         "-o", "panel.enabled=false", "--seconds", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "nosuchpcm" in errors[0] and "--out" in errors[0]
    assert "Traceback" not in r.stderr


def test_models_add_and_use_switch_the_running_daemon(daemon):
    """The SSH workflow: copy a model over, `models add` it, `models use` it; the daemon switches."""
    daemon.wait_for("READY=1")
    env = dict(os.environ, STATE_DIRECTORY=str(daemon.tmp / "state"), RUNTIME_DIRECTORY=str(daemon.tmp / "run"),
               DDSP_DEVICE_SYSTEM_CONFIG=str(daemon.tmp / "absent.toml"))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "ddsp_device.cli", "models", *args],
                              env=env, capture_output=True, text=True, timeout=60)

    added = cli("add", str(FIXTURES / "float_window.tflite"), "--name", "Mellow")
    assert added.returncode == 0, added.stderr
    assert (daemon.tmp / "state" / "models" / "Mellow.tflite").is_file()
    used = cli("use", "Mellow")
    assert used.returncode == 0, used.stdout + used.stderr
    daemon.wait_log("switching to model 'Mellow'")
    assert daemon.status()["model"] == "Mellow"
    # the choice survives the daemon's own state saves and a restart would play it
    refused = cli("remove", "Mellow", "--yes")
    assert refused.returncode == 1 and "active" in refused.stderr
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert json.loads((daemon.tmp / "state" / "state.json").read_text())["selected_model"] == "Mellow"
