"""Reloading the running daemon: all or nothing, never the end of the service.

Each test runs the real service (:func:`run_service`) on emulated sensors and audio time (see
``live_service.py``) and sends it reloads from the control loop.
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from live_service import GOOD, LiveService, refusals

from ddsp_device.controls.calibration import Calibration, save

pytestmark = pytest.mark.runtime


@pytest.fixture
def live(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ddsp_device")
    return LiveService(tmp_path, monkeypatch)


def _snapshot(service) -> dict:
    """What a reload switches (the engine's gain and reverb follow the knobs, not the reload)."""
    return {"cfg": service.cfg, "rig": service.rig, "model": service.engine.model, "name": service.model_name,
            "calibration": getattr(service, "_calibration", None)}


def _assert_unchanged(service, before: dict) -> None:
    now = _snapshot(service)
    assert now["cfg"] is before["cfg"] and now["rig"] is before["rig"]
    assert now["name"] == before["name"] and now["calibration"] is before["calibration"]
    assert now["model"] is before["model"] and not service.engine.swap_pending


# -- defect 1: a reload the rig or the mapping refuses ---------------------------------------------


@pytest.mark.parametrize("bad", [
    '[controls]\nscale = "majr"\n',
    '[controls]\nscale_key = "Q"\n',
    '[controls]\npressure_curve = "loud"\n',
    '[controls]\npressure_curve = "-1"\n',
    "[controls]\nvolume_channel = 0\n",
    "[controls]\nadc_data_rate = 3000\n",
])
def test_a_controls_config_run_would_refuse_is_refused_on_reload(live, caplog, bad):
    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        before = _snapshot(service)
        frames = live.frames()
        live.write_config(bad)
        yield live.reload(signal_it=True)
        assert service.reloads_refused == 1
        _assert_unchanged(service, before)
        key = bad.split("\n")[1].split("=")[0].strip()
        assert f"controls.{key}" in service.last_reload_error
        yield live.audio_passes(0.1)
        assert live.frames() > frames and service.audio.is_alive()

    assert live.run(script) == 0
    (line,) = refusals(caplog)
    assert "config: controls." in line


def test_under_emulate_a_refused_reload_is_logged_and_counted_and_controls_rebuilt(tmp_path, monkeypatch, caplog):
    """``run --emulate`` (the service makes its own emulated build): as on a box."""
    caplog.set_level(logging.INFO, logger="ddsp_device")
    live = LiveService(tmp_path, monkeypatch, inject_bus=False)

    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        first = service.rig
        live.write_config('[controls]\nscale = "majr"\n')
        yield live.reload(signal_it=True)
        assert service.reloads_refused == 1 and service.rig is first
        live.write_config("[controls]\nquantise_strength = 1.0\n")
        yield live.reload(signal_it=True)
        assert service.reloads_refused == 1 and service.rig is not first
        assert service.rig.mapper.pitch.config.strength == 1.0
        yield live.audio_passes(0.1)
        assert service.rig.poller.latest.raw is not None  # the new emulated build plays

    assert live.run(script) == 0
    (line,) = refusals(caplog)
    assert "controls.scale: unknown scale 'majr' (did you mean 'major'?)" in line


def test_everything_or_nothing_a_refused_model_keeps_the_new_controls_out(live, caplog):
    """New controls, a new reverb mix and a broken model in one reload: none of it is applied."""
    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        before = _snapshot(service)
        live.write_config("[controls]\nquantise_strength = 1.0\n[synth]\nreverb_mix = 0.5\n")
        live.write_state("Broken")
        yield live.reload()
        assert service.reloads_refused == 1
        _assert_unchanged(service, before)
        assert service.rig.mapper.pitch.config.strength == 0.0
        assert "Broken.tflite" in service.last_reload_error
        # the same edits with a model that plays: all of them at once
        live.write_state("Other")
        yield live.reload()
        assert service.reloads_refused == 1 and service.last_reload_error is None
        assert service.cfg is not before["cfg"] and service.rig is not before["rig"]
        assert service.rig.mapper.pitch.config.strength == 1.0 and service.cfg.synth.reverb_mix == 0.5
        assert service.model_name == "Other"

    assert live.run(script) == 0
    assert len(refusals(caplog)) == 1


def test_the_new_controls_take_over_the_pressure_baseline(live):
    def script(live):
        yield live.audio_passes(0.2)
        service = live.service
        first = service.rig
        baseline = first.mapper.pressure.baseline
        assert baseline is not None
        yield live.reload()  # nothing changed: the same rig
        assert service.rig is first
        live.write_config("[controls]\nquantise_strength = 1.0\n")
        yield live.reload()
        assert service.rig is not first
        assert service.rig.mapper.pressure.baseline == pytest.approx(baseline)
        assert not first.poller._thread  # the old poller was stopped

    assert live.run(script) == 0


def test_a_broken_calibration_is_refused_and_the_old_one_plays_on(live, caplog):
    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        before = _snapshot(service)
        live.calibration_path.write_text(json.dumps({"version": 1, "created_at": "2026-01-01T00:00:00Z",
                                                     "ribbon": {"low": 0.5, "high": 0.5, "open": 0.0},
                                                     "pressure": {"rest": 0.0, "max": 0.5}}))
        yield live.reload()
        assert service.reloads_refused == 1
        assert service.last_reload_error.startswith("calibration: ")
        assert "ribbon.high: must differ from ribbon.low" in service.last_reload_error
        _assert_unchanged(service, before)
        save(Calibration.default(knobs=["volume", "reverb"]), live.calibration_path)
        yield live.reload()
        assert service.reloads_refused == 1 and service.rig is not before["rig"]

    assert live.run(script) == 0
    assert len(refusals(caplog)) == 1


def test_controls_that_cannot_be_built_are_refused(live, monkeypatch):
    from ddsp_device.errors import SensorError

    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        before = _snapshot(service)

        def no_bus(cfg, calibration=None):
            raise SensorError("/dev/i2c-1: No such file or directory")

        monkeypatch.setattr(service, "build_controls", no_bus)
        live.write_config("[controls]\nquantise_strength = 1.0\n")
        yield live.reload()
        assert service.reloads_refused == 1 and "controls: /dev/i2c-1" in service.last_reload_error
        _assert_unchanged(service, before)

    assert live.run(script) == 0


def test_no_exception_from_a_reload_leaves_the_control_loop(live, monkeypatch, caplog):
    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        before = _snapshot(service)

        def boom(path, cfg=None):
            raise RuntimeError("the runtime fell over")

        monkeypatch.setattr(service, "load_model_file", boom)
        live.write_state("Other")
        frames = live.frames()
        yield live.reload()
        assert service.reloads_refused == 1
        assert service.last_reload_error == "RuntimeError: the runtime fell over"
        _assert_unchanged(service, before)
        yield live.audio_passes(0.1)
        assert live.frames() > frames

    assert live.run(script) == 0
    (line,) = refusals(caplog)
    assert line.endswith("RuntimeError: the runtime fell over")


# -- defect 5: settings that need a restart -------------------------------------------------------


def test_audio_settings_wait_for_a_restart_and_status_says_so(live, caplog):
    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        live.write_config("[audio]\nsample_rate = 44100\nperiod_size = 256\nperiods = 4\n")
        yield live.reload()
        status = service.status()
        assert status["audio"]["rate"] == 48000 and status["audio"]["period"] == 128
        assert status["budget_ms"] == pytest.approx(1000.0 * 128 / 48000)
        assert status["restart_needed"] == ["audio.sample_rate", "audio.period_size", "audio.periods"]
        assert "restart needed for audio.sample_rate" in service.status_line()
        assert service.reloads_refused == 0
        assert service.audio.period_size == 128  # the audio thread runs on as it started
        yield live.reload()  # the same again: no second log line
        live.write_config("")
        yield live.reload()  # back to the running values: nothing waits for a restart
        assert service.status()["restart_needed"] == []

    assert live.run(script) == 0
    lines = [r.getMessage() for r in caplog.records if "restart needed" in r.getMessage()]
    assert lines == ["restart needed for audio.sample_rate, audio.period_size, audio.periods: running at the "
                     "values the service started with (systemctl restart ddsp-device)"]


# -- defect 6: the selection in state.json is untrusted ---------------------------------------------


def test_a_selection_that_is_a_path_is_refused_without_opening_it(live, monkeypatch, caplog):
    opened = []
    import ddsp_device.model.check as check_mod

    real = check_mod.check_model_file

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(check_mod, "check_model_file", spy)

    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        live.write_state("../../../etc/passwd")
        yield live.reload()
        assert service.reloads_refused == 1
        assert "selected_model '../../../etc/passwd' is not a model name" in service.last_reload_error
        assert "path separator" in service.last_reload_error
        assert service.model_name == "Good"

    assert live.run(script) == 0
    assert not any("passwd" in p for p in opened)
    assert len(refusals(caplog)) == 1


def test_a_hostile_selection_at_start_plays_the_configured_model(live, caplog):
    live.write_state("../../../etc/passwd")

    def script(live):
        yield live.audio_passes(0.1)
        assert live.service.model_name == "Good"

    assert live.run(script) == 0
    assert "not a model name" in caplog.text


def test_the_log_and_status_name_the_model_as_it_was_chosen(live, caplog):
    shutil.copyfile(GOOD, live.models / "Mine.tflite")  # its metadata calls it TestFixture

    def script(live):
        yield live.audio_passes(0.1)
        live.write_state("Mine")
        yield live.reload()
        status = live.service.status()
        assert status["model"] == "Mine" and status["model_path"] == str(live.models / "Mine.tflite")

    assert live.run(script) == 0
    assert "switching to model 'Mine'" in caplog.text


# -- defect 9: the reload request over the status socket ------------------------------------------


def test_a_reload_asked_over_the_status_socket(live):
    from ddsp_device.daemon.status import ask_to_reload

    def script(live):
        yield live.audio_passes(0.1)
        service = live.service
        live.write_state("Other")
        answer = ask_to_reload(live.run_dir / "status.sock", timeout_s=5.0)
        assert answer["reload"] == "requested" and answer["reloads"] == 0
        yield lambda: service.reloads == 1
        assert service.model_name == "Other"

    assert live.run(script) == 0
