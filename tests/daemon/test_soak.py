"""A short soak with every kind of fault: the whole daemon, faster than real time."""

import json
import time

import pytest

from ddsp_device.cli import main
from ddsp_device.daemon.soak import Faults, Soak

pytestmark = pytest.mark.runtime


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DDSP_DEVICE_SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()


def planned_reloads(seconds, spec):
    soak = Soak(seconds, Faults.parse(spec))
    try:
        return len(soak.model_times)
    finally:
        soak.close()


def test_short_soak_with_faults_passes(capsys):
    spec = "i2c=0.02,xrun=0.3,model=0.4"
    planned = planned_reloads(25, spec)
    assert planned >= 4  # the seed's schedule: a test of it needs a few of each kind
    assert main(["soak", "--seconds", "25", "--faults", spec, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    f, s = r["faults_injected"], r["survived"]
    assert r["pass"] and all(r["checks"].values()), r["checks"]
    assert r["audio_s"] >= 25
    assert f["i2c_errors"] > 0 and f["sensor_dropouts"] >= 1 and f["xruns"] > 0
    # every scheduled reload was delivered, however far the control thread fell behind
    assert f["broken_models"] == planned // 2 and f["valid_reloads"] == planned - planned // 2
    assert s["crashes"] == 0 and s["xruns_counted"] == f["xruns"]
    assert s["reloads_refused"] == f["broken_models"] and s["crossfades"] >= f["valid_reloads"]
    assert r["nan_samples"] == 0 and r["peak_dbfs"] is not None and -60 < r["peak_dbfs"] <= -0.3
    assert r["memory_mb"]["growth"] < 5.0


def test_soak_without_faults(capsys):
    assert main(["soak", "--seconds", "5", "--faults", "none"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "0 I2C errors" in out


@pytest.mark.parametrize("spec, message", [
    ("i2c=2", "at most 0.5"), ("disk=1", "expected i2c=RATE"), ("xrun=fast", "not a number"), ("model=-1", ">= 0"),
])
def test_bad_fault_spec_is_one_line(capsys, spec, message):
    assert main(["soak", "--seconds", "1", "--faults", spec]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_faults_parse():
    assert Faults.parse("none") == Faults()
    assert Faults.parse("i2c=0.1, xrun=2") == Faults(i2c=0.1, xrun=2.0)


def test_every_scheduled_reload_is_delivered_when_the_control_thread_lags(monkeypatch):
    """A loaded machine: each model check holds the control thread while 1.5 s of audio play
    (measured in audio time, so the test is the same on any machine). No reload is skipped."""
    from ddsp_device.daemon import service as service_mod

    soak = Soak(8, Faults(model=1.0))
    planned = len(soak.model_times)
    assert planned >= 4
    load_model = service_mod.Service.load_model

    def lagging(self, name):
        if soak.service is not None:  # playing (not the first load, before the audio starts)
            start = soak.audio_s()
            while soak.audio_s() < start + 1.5 and self.audio.is_alive():
                time.sleep(0.002)
        return load_model(self, name)

    monkeypatch.setattr(service_mod.Service, "load_model", lagging)
    try:
        r = soak.run()
    finally:
        soak.close()
    f, s = r["faults_injected"], r["survived"]
    assert f["valid_reloads"] + f["broken_models"] == planned
    assert s["crashes"] == 0 and s["reloads_refused"] == f["broken_models"] and s["crossfades"] >= f["valid_reloads"]
