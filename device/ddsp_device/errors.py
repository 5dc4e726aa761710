"""One exception tree for the project.

Every error a user can cause derives from :class:`DdspDeviceError` and also from the builtin
that describes it best, so callers may catch either (gpiozero's convention).
"""

from __future__ import annotations


class DdspDeviceError(Exception):
    """Base of every error raised on purpose by ddsp-device."""


class ConfigError(DdspDeviceError, ValueError):
    """The configuration is invalid. ``problems`` holds one ``section.key: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid configuration")


class ModelError(DdspDeviceError, ValueError):
    """A model file cannot be used: unreadable, wrong tensors, unsupported ops, bad metadata."""


class RuntimeUnavailableError(ModelError, ImportError):
    """Neither TFLite runtime could be imported; the message lists what was tried and why."""


class SensorError(DdspDeviceError, OSError):
    """An I2C sensor failed; the message names the device, address and register."""


class AudioError(DdspDeviceError, OSError):
    """The audio sink cannot be opened or written."""


class ControlsError(DdspDeviceError, ValueError):
    """A control file or control value is invalid (e.g. a performance CSV)."""
