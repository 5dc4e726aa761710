"""The box's controls, built from ``[controls]``: sensors → poller → mapping.

:func:`build_rig` opens the I2C bus (or takes an emulated one), creates the configured drivers,
wraps the mapping (:mod:`ddsp_device.controls.mapping`) and the calibration in a mapper and
hands both to a :class:`~ddsp_device.controls.poller.SensorPoller`. What it returns is what the
daemon, ``monitor`` and ``calibrate`` use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError, ControlsError
from . import calibration as calibration_mod
from .ads1x15 import ADS1015, ADS1115
from .bus import I2CBus, open_bus
from .calibration import Calibration
from .mapping import (
    Knob,
    KnobSteps,
    KeysConfig,
    KeysPitch,
    PressureConfig,
    PressureLoudness,
    RibbonConfig,
    RibbonPitch,
)
from .mpr121 import MPR121
from .mprls import MPRLS
from .poller import AdcInput, ControlState, RawReading, SensorPoller

log = logging.getLogger(__name__)

#: Knob roles, in the order their values appear in ``ControlState.knobs`` (each has a
#: ``controls.<role>_channel``; the config schema gives each fitted knob an ADC input of its own).
KNOB_ROLES = ("volume", "reverb", "transpose", "tone")
TRANSPOSE_KNOB_SEMITONES = 12
#: MPRLS playing range above the rest pressure for an uncalibrated box, hPa.
MPRLS_DEFAULT_RANGE_HPA = 40.0


class InstrumentMapper:
    """Raw readings → ``(f0_hz, loudness, knobs)``: the mapping configured in ``[controls]``.

    Runs in the sensor thread. ``knobs`` holds one 0..1 value per fitted knob, in the order of
    :attr:`knob_roles`; a transpose knob is mapped to whole semitones here and applied to f0.
    A knob missing from a saved calibration (fitted after it was taken) assumes its whole range.
    """

    def __init__(self, cfg, calibration: Calibration):
        c = cfg.controls
        self.knob_roles = tuple(r for r in KNOB_ROLES if getattr(c, f"{r}_channel") >= 0)
        transpose = dict(transpose_octaves=c.transpose_octaves, transpose_semitones=float(c.transpose_semitones))
        self.pitch: RibbonPitch | KeysPitch | None = None
        if c.pitch_source == "ribbon":
            self.pitch = RibbonPitch.from_calibration(
                RibbonConfig(
                    base_hz=c.ribbon_base_hz, range_semitones=c.ribbon_range_semitones,
                    scale=c.scale, key=c.scale_key, strength=c.quantise_strength, glide_s=c.glide_s,
                    **transpose,
                ),
                calibration,
            )
        elif c.pitch_source == "keys":
            self.pitch = KeysPitch(KeysConfig(
                base_hz=c.keys_base_hz, scale=c.keys_scale, n_pads=c.keys_electrodes, **transpose,
            ))
        self.pressure: PressureLoudness | None = None
        if c.pressure_source != "none":
            self.pressure = PressureLoudness.from_calibration(
                PressureConfig(
                    threshold=c.pressure_threshold, curve=c.pressure_curve, range_db=c.pressure_range_db,
                    attack_s=c.pressure_attack_s, release_s=c.pressure_release_s,
                ),
                calibration,
                auto_zero=c.pressure_auto_zero,
            )
        self.uses_hpa = c.pressure_source == "mprls"
        self.knobs = [_knob(calibration, role, c.knob_dead_band) for role in self.knob_roles]
        self.transpose_steps = (
            KnobSteps(-TRANSPOSE_KNOB_SEMITONES, TRANSPOSE_KNOB_SEMITONES) if "transpose" in self.knob_roles else None
        )
        self._transpose_index = self.knob_roles.index("transpose") if self.transpose_steps else -1
        self._t_prev: float | None = None
        self.f0_hz = c.ribbon_base_hz if c.pitch_source != "keys" else c.keys_base_hz
        self.loudness = 0.0

    def map(self, raw: RawReading) -> tuple[float, float, tuple[float, ...]]:
        dt_s = 0.001 if self._t_prev is None else max(0.0, raw.t - self._t_prev)
        self._t_prev = raw.t
        knobs = tuple(k.step(v) for k, v in zip(self.knobs, raw.knobs))
        semitones = 0.0
        if self.transpose_steps is not None and self._transpose_index < len(knobs):
            semitones = float(self.transpose_steps.step(knobs[self._transpose_index]))
        if isinstance(self.pitch, RibbonPitch):
            self.f0_hz = self.pitch.step(raw.pitch, dt_s, semitones)
        elif isinstance(self.pitch, KeysPitch):
            self.f0_hz = self.pitch.step(raw.keys, dt_s, semitones)
        if self.pressure is not None:
            value = raw.pressure_hpa if self.uses_hpa else raw.pressure
            self.loudness = self.pressure.step(value, dt_s)
        return self.f0_hz, self.loudness, knobs


def _knob(calibration: Calibration, role: str, dead_band: float) -> Knob:
    """The knob ``role`` as calibrated; over the ADC's whole range when the calibration was
    taken before the knob was fitted (it still turns, the ends may be short of 0 and 1)."""
    if role in calibration.knobs:
        return Knob.from_calibration(calibration, role, dead_band)
    log.warning("knob %s is not in the calibration; using the whole ADC range (run `ddsp-device calibrate`)",
                role)
    return Knob(0.0, calibration_mod.ADC_FULL_SCALE, dead_band)


@dataclass
class Rig:
    """Everything the controls need, built from config. Close it to stop the poller (and to close
    the bus when :func:`build_rig` opened it; a bus passed in belongs to the caller)."""

    poller: SensorPoller
    mapper: InstrumentMapper
    calibration: Calibration
    calibrated: bool
    bus: Any
    owns_bus: bool = True

    @property
    def knob_roles(self) -> tuple[str, ...]:
        return self.mapper.knob_roles

    def knob(self, state: ControlState, role: str) -> float | None:
        """The 0..1 value of knob ``role`` in ``state``, or None when that knob is not fitted."""
        roles = self.mapper.knob_roles
        if role not in roles:
            return None
        i = roles.index(role)
        return state.knobs[i] if i < len(state.knobs) else None

    def close(self) -> None:
        self.poller.stop()
        close = getattr(self.bus, "close", None) if self.owns_bus else None
        if close is not None:
            try:
                close()
            except OSError:
                pass

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_calibration(cfg) -> Calibration:
    """What an uncalibrated box assumes (see :meth:`Calibration.default`)."""
    roles = [r for r in KNOB_ROLES if getattr(cfg.controls, f"{r}_channel") >= 0]
    if cfg.controls.pressure_source == "mprls":
        return Calibration.default(knobs=roles, pressure_rest=1013.25, pressure_max=1013.25 + MPRLS_DEFAULT_RANGE_HPA)
    return Calibration.default(knobs=roles)


def load_calibration(cfg, path=None) -> tuple[Calibration, bool]:
    """The saved calibration, or the default one. Returns ``(calibration, was_saved)``.

    A damaged calibration file is logged (naming the file and field) and the defaults are used:
    the instrument still plays.
    """
    try:
        saved = calibration_mod.load(path)
    except ControlsError as err:
        log.error("%s; using the default calibration (run `ddsp-device calibrate`)", err)
        saved = None
    if saved is None:
        return default_calibration(cfg), False
    return saved, True


def build_rig(
    cfg,
    *,
    bus: I2CBus | None = None,
    clock=None,
    calibration: Calibration | None = None,
    on_publish: Callable[[ControlState], None] | None = None,
) -> Rig:
    """Create drivers, mapper and poller for ``cfg``; the poller is not started.

    ``cfg`` is taken as loaded: the config schema has already refused every combination the
    hardware cannot do (an ADC input used twice, a data rate the chip lacks, two chips on one
    address), so nothing is checked again here.

    Args:
        cfg: a loaded config.
        bus: an I2C bus; None opens ``/dev/i2c-<controls.i2c_bus>``.
        clock: for emulated runs (see :mod:`ddsp_device.controls.emulated`).
        calibration: None loads the saved one (or the defaults).
    Raises:
        SensorError: the bus cannot be opened (names it).
    """
    c = cfg.controls
    calibrated = True
    if calibration is None:
        calibration, calibrated = load_calibration(cfg)
    owns_bus = bus is None
    if bus is None:
        bus = open_bus(c.i2c_bus)
    adc_cls = ADS1015 if c.adc_type == "ads1015" else ADS1115
    adc = None

    def get_adc():
        nonlocal adc
        if adc is None:
            adc = adc_cls(bus, c.adc_address, data_rate=c.adc_data_rate or None, full_scale_v=c.adc_full_scale_v,
                          supply_v=c.supply_v, clock=clock)
        return adc

    pitch = None
    if c.pitch_source == "ribbon":
        pitch = AdcInput(get_adc(), c.pitch_channel)
    elif c.pitch_source == "keys":
        pitch = MPR121(bus, c.keys_address, electrodes=c.keys_electrodes, clock=clock)
    pressure = None
    if c.pressure_source == "adc":
        pressure = AdcInput(get_adc(), c.pressure_channel)
    elif c.pressure_source == "mprls":
        pressure = MPRLS(bus, c.mprls_address, psi_max=c.mprls_psi_max, clock=clock)
    mapper = InstrumentMapper(cfg, calibration)
    # The config schema has checked that every fitted knob has an ADC input of its own.
    knobs = [AdcInput(get_adc(), getattr(c, f"{role}_channel")) for role in mapper.knob_roles]
    try:
        poller = SensorPoller(
            mapper, pitch=pitch, pressure=pressure, knobs=knobs, knob_interval=c.knob_interval,
            grace_s=c.grace_s, fade_s=c.fade_s, initial_f0_hz=mapper.f0_hz, bus_hz=float(c.i2c_hz),
            clock=clock, on_publish=on_publish,
        )
    except ValueError as err:
        raise ConfigError([f"controls: {err}"]) from err
    return Rig(poller=poller, mapper=mapper, calibration=calibration, calibrated=calibrated, bus=bus,
               owns_bus=owns_bus)


def nominal_sensor_rate_hz(cfg) -> float:
    """How often the configured build reads its playing sensors, Hz (no hardware touched).

    The slower of pitch and pressure, estimated from the chips' conversion times and the I2C bit
    rate; the latency budget's sensor interval is its inverse.
    """
    from .emulated import EmulatedBus, FakeClock

    clock = FakeClock()
    rig = build_rig(cfg, bus=EmulatedBus(clock), clock=clock, calibration=default_calibration(cfg))
    rate = rig.poller.nominal_rate_hz
    return rate if rate > 0 else 1000.0
