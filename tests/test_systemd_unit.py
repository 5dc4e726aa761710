"""systemd/ddsp-device.service: the daemon's contract, `systemd-analyze verify` and `security`.

The unit starts ``/opt/ddsp-device/venv/bin/ddsp-device``, which exists only on an installed
box, and `verify` rightly fails on a missing executable. So `verify` checks a copy in which only
the ExecStart path points at a stub executable; every other line is the shipped one (checked
below). `systemd-analyze verify --root=DIR` is no help: it then wants the whole unit tree
(sysinit.target, …) under DIR. `security --offline=yes` reads the shipped file as it is.

Debian's `systemd` package provides systemd-analyze and systemd-sysusers (the Makefile installs
it for `make test`); installing it in a container starts nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "ddsp-device.service"
CPUFREQ_UNIT = ROOT / "systemd" / "ddsp-device-cpufreq.service"
SYSUSERS = ROOT / "systemd" / "ddsp-device.sysusers"
MODULES_LOAD = ROOT / "systemd" / "ddsp-device.modules-load"
EXEC_START = "/opt/ddsp-device/venv/bin/ddsp-device run"
MAX_EXPOSURE = 1.5

ANALYZE = shutil.which("systemd-analyze")
SYSUSERS_BIN = shutil.which("systemd-sysusers")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package 'systemd'; `make test` installs it)"
)


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}``; repeated keys (DeviceAllow=) keep every value."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {raw!r} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return unit_settings(UNIT)["Service"]


def one(key: str) -> str:
    values = service()[key]
    assert len(values) == 1, f"{key}= given {len(values)} times"
    return values[0]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def verifiable_copy(tmp_path: Path) -> Path:
    """The shipped unit with only ExecStart's executable replaced by an existing stub."""
    stub = tmp_path / "venv" / "bin" / "ddsp-device"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(f"ExecStart={EXEC_START}\n") == 1
    copy = tmp_path / "ddsp-device.service"  # verify wants the real unit name
    copy.write_text(text.replace(f"ExecStart={EXEC_START}\n", f"ExecStart={stub} run\n"))
    return copy


# -- the contract with the daemon (no systemd needed) --------------------------------------------


def test_life_cycle_matches_the_daemon():
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == EXEC_START
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    watchdog = one("WatchdogSec")
    assert re.fullmatch(r"\d+s?", watchdog) and 2 <= int(watchdog.rstrip("s")) <= 30
    for key in ("RestartSec", "TimeoutStartSec", "TimeoutStopSec"):
        assert one(key)


def test_identity_and_directories():
    assert one("User") == "ddsp-device"
    assert one("StateDirectory") == "ddsp-device"
    assert one("RuntimeDirectory") == "ddsp-device"
    assert one("ConfigurationDirectory") == "ddsp-device"
    # lgpio writes FIFOs into the working directory: it must be one the service may write
    assert one("WorkingDirectory") in {"/run/ddsp-device", "/var/lib/ddsp-device", "%t/ddsp-device", "%S/ddsp-device"}
    # the status socket's group (ddsp-device) must be able to reach it
    assert int(one("RuntimeDirectoryMode"), 8) & 0o050 == 0o050
    assert int(one("StateDirectoryMode"), 8) & 0o007 == 0


def test_realtime_is_allowed():
    assert int(one("LimitRTPRIO")) >= 70  # the audio thread asks for SCHED_FIFO 70
    assert one("LimitMEMLOCK") == "infinity"  # mlockall(MCL_FUTURE)
    assert "RestrictRealtime" not in service(), "RestrictRealtime= forbids SCHED_FIFO"


def test_devices_sound_i2c_gpio_only():
    settings = service()
    assert one("DevicePolicy") == "closed"
    assert sorted(settings["DeviceAllow"]) == ["char-alsa rw", "char-gpiochip rw", "char-i2c rw"]
    assert "PrivateDevices" not in settings, "PrivateDevices= hides /dev/snd, /dev/i2c-*, /dev/gpiochip*"
    assert "ProcSubset" not in settings, "ProcSubset=pid hides /proc/asound and /proc/cpuinfo"
    # the classes resolved through /proc/devices at start must be registered by then
    modules = [m for m in MODULES_LOAD.read_text().split() if not m.startswith("#")]
    assert {"snd", "i2c-dev"} <= set(modules)
    after = unit_settings(UNIT)["Unit"]["After"][0].split()
    assert "systemd-modules-load.service" in after


def test_no_network_no_capabilities():
    assert one("PrivateNetwork") == "yes"
    assert one("RestrictAddressFamilies") == "AF_UNIX"
    assert one("CapabilityBoundingSet") == ""
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"


def test_sysusers_declares_user_and_groups():
    lines = [line.split() for line in SYSUSERS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ["m", "ddsp-device", "audio"] in lines
    assert ["m", "ddsp-device", "i2c"] in lines
    assert ["m", "ddsp-device", "gpio"] in lines
    assert any(fields[:2] == ["u", "ddsp-device"] for fields in lines)


# -- systemd-analyze -----------------------------------------------------------------------------


@needs_analyze
def test_verify_is_clean(tmp_path):
    copy = verifiable_copy(tmp_path)
    result = run(ANALYZE, "verify", str(copy))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    # other units on the host may warn about themselves; nothing may be about ours
    ours = [line for line in output.splitlines() if "ddsp-device" in line]
    assert ours == [], output


@needs_analyze
def test_verify_refuses_a_broken_copy(tmp_path):
    """The check has teeth: a typo in a directive is reported."""
    copy = verifiable_copy(tmp_path)
    copy.write_text(copy.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    result = run(ANALYZE, "verify", str(copy))
    assert "WatchdogSecs" in result.stdout + result.stderr


@needs_analyze
def test_cpufreq_unit_verifies_and_runs_first(tmp_path):
    copy = tmp_path / CPUFREQ_UNIT.name
    shutil.copy(CPUFREQ_UNIT, copy)
    result = run(ANALYZE, "verify", str(copy))
    assert result.returncode == 0 and "ddsp-device" not in result.stdout + result.stderr, result.stdout + result.stderr
    unit = unit_settings(CPUFREQ_UNIT)
    assert unit["Unit"]["Before"] == ["ddsp-device.service"]
    assert unit["Service"]["Type"] == ["oneshot"]
    assert "performance" in unit["Service"]["ExecStart"][0]


@needs_analyze
def test_security_exposure_at_most_1_5():
    result = run(ANALYZE, "security", "--offline=yes", "--no-pager", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for ddsp-device\.service:\s*([0-9.]+)", output)
    assert match, output
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, output


def syscalls(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls in a `systemd-analyze syscall-filter` group, nested groups expanded."""
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    result = run(ANALYZE, "syscall-filter", group)
    assert result.returncode == 0, result.stderr
    found: set[str] = set()
    for line in result.stdout.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        found |= syscalls(name, seen) if name.startswith("@") else {name}
    return found


@needs_analyze
def test_syscall_filter_keeps_realtime_and_mlock():
    filters = service()["SystemCallFilter"]
    assert filters == ["@system-service", "~@privileged"]
    allowed = syscalls("@system-service") - syscalls("@privileged")
    for call in ("sched_setscheduler", "sched_setattr", "mlockall", "mlock", "sched_setaffinity", "sendto"):
        assert call in allowed, call


# -- systemd-sysusers -----------------------------------------------------------------------------


def table(path: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines() if line}


@pytest.mark.skipif(SYSUSERS_BIN is None, reason="systemd-sysusers not installed (Debian package 'systemd')")
def test_sysusers_creates_missing_groups(tmp_path):
    """On plain Debian there is no i2c or gpio group: the `m` lines create them."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\naudio:x:29:\n")
    for name in ("shadow", "gshadow"):
        (etc / name).write_text("")
    for attempt in range(2):  # the second run changes nothing
        result = run(SYSUSERS_BIN, f"--root={tmp_path}", str(SYSUSERS))
        assert result.returncode == 0, result.stderr
        if attempt == 0:
            first = ((etc / "passwd").read_text(), (etc / "group").read_text())
    assert ((etc / "passwd").read_text(), (etc / "group").read_text()) == first
    users, groups = table(etc / "passwd"), table(etc / "group")
    user = users["ddsp-device"]
    assert int(user[2]) < 1000 and user[5] == "/var/lib/ddsp-device" and user[6].endswith("nologin")
    assert groups["ddsp-device"][2] == user[3]  # its own primary group
    for name in ("audio", "i2c", "gpio"):
        assert "ddsp-device" in groups[name][3].split(","), name
    assert groups["audio"][2] == "29"  # an existing group is joined, not recreated
