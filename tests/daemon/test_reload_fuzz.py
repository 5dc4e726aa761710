"""Reload fuzz: 200 reloads of random valid and invalid configs, calibrations and model
selections sent to the running daemon.

The daemon runs for real (``live_service.py``: run_service on emulated sensors and audio time).
Every input is drawn from a seeded generator, and whether each reload must be refused is known
from what was written, so the test asserts exact counts, not wall-clock luck: the service never
exits, the audio never stops (frames advance across every reload), every refusal is logged once
and counted, and every accepted reload switches to exactly what was written.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass

import pytest

from live_service import LiveService, refusals

from ddsp_device.controls.calibration import Calibration, save
from ddsp_device.daemon.status import ask_to_reload

pytestmark = pytest.mark.runtime

SEED = 11
N_RELOADS = 200

VALID_SCALES = ["chromatic", "major", "minor", "blues", "pentatonic", "0,3,7", "0, 2, 4, 7, 9"]
VALID_KEYS = ["C", "F#", "Bb", "g", "E"]
VALID_CURVES = ["linear", "soft", "hard", "amplitude", "0.7", "3"]
#: (volume, reverb, transpose) channels that leave pitch (0) and pressure (1) alone
KNOB_LAYOUTS = [(2, 3, -1), (-1, 3, -1), (2, -1, -1), (-1, -1, -1), (2, -1, 3), (-1, -1, 2), (3, 2, -1)]
#: (config lines, what the refusal names)
INVALID_CONFIGS = [
    ('[controls]\nscale = "majr"', "controls.scale"),
    ('[controls]\nscale_key = "Q"', "controls.scale_key"),
    ('[controls]\npressure_curve = "loud"', "controls.pressure_curve"),
    ('[controls]\npressure_curve = "-1"', "controls.pressure_curve"),
    ("[controls]\nvolume_channel = 0", "controls.volume_channel"),
    ("[controls]\nadc_data_rate = 3000", "controls.adc_data_rate"),
    ("[controls]\ntranspose_channel = 3\nreverb_channel = 3", "controls.transpose_channel"),
    ("[controls]\nscael = 1", "controls.scael: unknown key"),
    ("[controls]\nquantise_strength = 2.0", "controls.quantise_strength"),
    ('[synth]\nreverb_mix = "lots"', "synth.reverb_mix"),
    ('[model]\nruntime = "onnx"', "model.runtime"),
    ("[audio]\nperiod_size = 7", "audio.period_size"),
    ("[controls\nscale = 1", "invalid TOML"),
]
HOSTILE = ["../../../etc/passwd", "/etc/passwd", ".hidden", "a/b", "x.tflite"]


@dataclass
class Case:
    """One reload's inputs and what must come of them."""

    config: str
    config_error: str | None
    scale: str | None  # controls.scale written (valid configs)
    model_name: str  # [model] name written
    calibration: str  # "same", "valid", "broken", "deleted"
    selection: str | None  # state.json's selected_model after this step
    selection_changed: bool


def draw_config(rng: random.Random) -> tuple[str, str | None, str, str]:
    model_name = "Good" if rng.random() < 0.95 else "Other"
    if rng.random() < 0.3:
        lines, error = rng.choice(INVALID_CONFIGS)
        return lines + "\n", error, "", model_name
    scale = rng.choice(VALID_SCALES)
    volume, reverb, transpose = rng.choice(KNOB_LAYOUTS)
    lines = [
        "[controls]",
        f'scale = "{scale}"',
        f'scale_key = "{rng.choice(VALID_KEYS)}"',
        f"quantise_strength = {rng.choice([0.0, 0.5, 1.0])}",
        f'pressure_curve = "{rng.choice(VALID_CURVES)}"',
        f"glide_s = {rng.choice([0.0, 0.05, 0.2])}",
        f"volume_channel = {volume}", f"reverb_channel = {reverb}", f"transpose_channel = {transpose}",
        f"adc_data_rate = {rng.choice([0, 1600, 3300])}",
        "[synth]",
        f"reverb_mix = {rng.choice([0.0, 0.15, 0.5])}",
        f"master_gain_db = {rng.choice([-6.0, 0.0])}",
        "[model]",
        f'name = "{model_name}"',
    ]
    if rng.random() < 0.1:
        lines += ["[audio]", "period_size = 256"]  # valid, waits for a restart: not a refusal
    return "\n".join(lines) + "\n", None, scale, model_name


BAD_SELECTIONS = ("Broken", "Missing", *HOSTILE)


def draw_case(rng: random.Random, selection: str | None, calibration_broken: bool) -> Case:
    """The next reload's inputs. A bad calibration or selection usually gets fixed next time
    (as a person would), so that refusals do not run on for ever."""
    config, error, scale, model_name = draw_config(rng)
    r = rng.random()
    if calibration_broken:
        calibration = "valid" if r < 0.6 else "deleted" if r < 0.7 else "same"
    else:
        calibration = "same" if r < 0.7 else "valid" if r < 0.85 else "broken" if r < 0.93 else "deleted"
    r = rng.random()
    if selection in BAD_SELECTIONS:
        new = rng.choice(["Good", "Other", None]) if r < 0.7 else selection
    elif r < 0.7:
        new = selection
    elif r < 0.78:
        new = rng.choice(["Good", "Other"])
    elif r < 0.84:
        new = None
    elif r < 0.89:
        new = "Broken"
    elif r < 0.96:
        new = rng.choice(HOSTILE)
    else:
        new = "Missing"
    return Case(config, error, scale or None, model_name, calibration, new, new != selection)


def write_calibration(live: LiveService, rng: random.Random, kind: str) -> None:
    path = live.calibration_path
    if kind == "valid":
        low = rng.choice([0.02, 0.05, 0.1])
        knobs = rng.choice([[], ["volume"], ["volume", "reverb"], ["volume", "reverb", "transpose"]])
        cal = Calibration(ribbon_low=low, ribbon_high=rng.choice([0.9, 0.95]), ribbon_open=0.0,
                          pressure_rest=0.0, pressure_max=rng.choice([0.4, 0.5]),
                          knobs={k: Calibration.default(knobs=[k]).knobs[k] for k in knobs},
                          created_at="2026-01-01T00:00:00Z")
        save(cal, path)
    elif kind == "broken":
        tmp = path.with_name(".broken.tmp")
        tmp.write_text(rng.choice([
            '{"version": 1, "created_at": "2026-01-01T00:00:00Z", "ribbon": {"low": 0.5, "high": 0.5, '
            '"open": 0.0}, "pressure": {"rest": 0.0, "max": 0.5}}',
            "{not json",
            '{"version": 2}',
            json.dumps({"version": 1, "created_at": "2026-01-01T00:00:00Z", "ribbon": {"low": 0.1, "high": 0.9},
                        "pressure": {"rest": 0.0, "max": 0.5}}),
        ]))
        os.replace(tmp, path)
    elif kind == "deleted":
        path.unlink(missing_ok=True)


def test_200_random_reloads_never_stop_the_daemon(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ddsp_device")
    live = LiveService(tmp_path, monkeypatch, seed=SEED)
    rng = random.Random(SEED)
    outcome = {"refused": 0, "accepted": 0, "switches": 0, "by_reason": {}}

    def script(live):
        yield live.audio_passes(0.05)
        service = live.service
        selection = None
        calibration_broken = False
        for i in range(N_RELOADS):
            case = draw_case(rng, selection, calibration_broken)
            live.write_config(case.config)
            if case.calibration != "same":
                write_calibration(live, rng, case.calibration)
                calibration_broken = case.calibration == "broken"
            selection = case.selection
            if case.selection_changed:
                live.write_state(selection)

            # what must happen, in the order the daemon checks
            if case.config_error is not None:
                label, reason = "config", case.config_error
            elif selection in HOSTILE:
                label, reason = "hostile selection", "is not a model name"
            elif selection == "Missing":
                label, reason = "missing model", "model 'Missing': not found"
            elif calibration_broken:
                label, reason = "calibration", "calibration: "
            elif selection == "Broken":
                label, reason = "broken model", "Broken.tflite"
            else:
                label, reason = "", None
            expected_model = selection or case.model_name

            frames = live.frames()
            old_model = service.model_name
            refused_before = service.reloads_refused
            if i % 10 == 5:  # as `models use` does for a user who may not signal the daemon
                before = service.reloads
                assert ask_to_reload(live.run_dir / "status.sock", timeout_s=5.0)["reload"] == "requested"
                yield live.reload_done(before)
            else:
                yield live.reload(signal_it=i % 10 == 0)

            assert service.reloads == i + 1
            assert service.audio.is_alive()
            if reason is None:
                outcome["accepted"] += 1
                assert service.reloads_refused == refused_before, (i, case, service.last_reload_error)
                assert service.model_name == expected_model, (i, case)
                assert service.cfg.controls.scale == (case.scale or "chromatic"), (i, case)
                outcome["switches"] += service.model_name != old_model
            else:
                outcome["refused"] += 1
                outcome["by_reason"][label] = outcome["by_reason"].get(label, 0) + 1
                assert service.reloads_refused == refused_before + 1, (i, case)
                assert reason in service.last_reload_error, (i, case, service.last_reload_error)
                assert service.model_name == old_model
            yield live.audio_passes(0.02)  # the audio goes on between reloads, and across them
            assert live.frames() > frames

    assert live.run(script) == 0
    service = live.service
    assert service.engine.crossfades == outcome["switches"]  # each switch crossfaded, nothing reloaded twice
    assert service.reloads == N_RELOADS
    assert service.reloads_refused == outcome["refused"]
    assert len(refusals(caplog)) == outcome["refused"]  # every refusal logged, once
    assert outcome["refused"] >= 50 and outcome["accepted"] >= 50 and outcome["switches"] >= 5, outcome
    assert live.sink.nonfinite == 0
    print(f"\nreload fuzz: {N_RELOADS} reloads, {outcome['accepted']} accepted ({outcome['switches']} model "
          f"switches), {outcome['refused']} refused {outcome['by_reason']}, "
          f"{live.audio_s():.1f} s of audio, crossfades {service.engine.crossfades}")
