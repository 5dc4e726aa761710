"""systemd/install.sh into a staging root (DESTDIR) without the venv: every path, owner and mode,
idempotency, the user's files preserved, uninstall and purge.

In DESTDIR mode the installer must not touch the machine: every tool that would (apt-get,
systemctl, systemd-sysusers, chown, modprobe) is replaced here by a stub that records its call,
and the record must stay empty.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "systemd" / "install.sh"
BUNDLED = sorted((ROOT / "models").glob("*.tflite"))
FORBIDDEN = ("apt-get", "apt", "dpkg", "systemctl", "systemd-sysusers", "chown", "chgrp", "modprobe", "useradd", "usermod")

SVC = ("ddsp-device", "ddsp-device")
ROOT_OWNED = ("root", "root")
# path: (type, mode, owner, group) -- everything a default install creates, nothing else
EXPECTED = {
    "/opt/ddsp-device": ("d", 0o755, *ROOT_OWNED),
    "/etc/ddsp-device": ("d", 0o755, *ROOT_OWNED),
    "/etc/ddsp-device/config.toml": ("f", 0o644, *ROOT_OWNED),
    "/etc/ddsp-device/config.toml.default": ("f", 0o644, *ROOT_OWNED),
    "/var/lib/ddsp-device": ("d", 0o2770, *SVC),
    "/var/lib/ddsp-device/models": ("d", 0o2770, *SVC),
    "/usr/lib/sysusers.d/ddsp-device.conf": ("f", 0o644, *ROOT_OWNED),
    "/usr/lib/modules-load.d/ddsp-device.conf": ("f", 0o644, *ROOT_OWNED),
    "/usr/lib/systemd/system/ddsp-device.service": ("f", 0o644, *ROOT_OWNED),
    "/usr/local/bin/ddsp-device": ("l", 0o777, *ROOT_OWNED),
    **{f"/var/lib/ddsp-device/models/{m.name}": ("f", 0o640, *SVC) for m in BUNDLED},
}
SOURCES = {
    "/etc/ddsp-device/config.toml": ROOT / "device" / "ddsp_device" / "defaults.toml",
    "/etc/ddsp-device/config.toml.default": ROOT / "device" / "ddsp_device" / "defaults.toml",
    "/usr/lib/sysusers.d/ddsp-device.conf": ROOT / "systemd" / "ddsp-device.sysusers",
    "/usr/lib/modules-load.d/ddsp-device.conf": ROOT / "systemd" / "ddsp-device.modules-load",
    "/usr/lib/systemd/system/ddsp-device.service": ROOT / "systemd" / "ddsp-device.service",
    "/usr/lib/systemd/system/ddsp-device-cpufreq.service": ROOT / "systemd" / "ddsp-device-cpufreq.service",
    **{f"/var/lib/ddsp-device/models/{m.name}": m for m in BUNDLED},
}


@pytest.fixture
def stubs(tmp_path):
    """A PATH directory whose system tools only record that they were called."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    log = tmp_path / "stub-calls.log"
    for name in FORBIDDEN:
        tool = bin_dir / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 1\n')
        tool.chmod(0o755)
    return bin_dir, log


@pytest.fixture
def stage(tmp_path):
    return tmp_path / "root"


def installer(stage: Path, stubs, action: str = "install", **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir, log = stubs
    full_env = {k: v for k, v in os.environ.items() if k not in {"DESTDIR", "GOVERNOR", "PURGE", "NO_START", "SKIP_VENV"}}
    full_env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", DESTDIR=str(stage), SKIP_VENV="1", **env)
    result = subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, env=full_env, timeout=120)
    assert not log.exists(), f"the installer touched the system in DESTDIR mode: {log.read_text()}"
    return result


def install(stage, stubs, **env) -> str:
    result = installer(stage, stubs, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def manifest(stage: Path) -> dict[str, tuple]:
    entries = {}
    for line in (stage / ".install-manifest").read_text().splitlines():
        kind, mode, owner, group, path = line.split("\t")
        assert path.startswith("/") and path not in entries, line
        entries[path] = (kind, int(mode, 8), owner, group)
    return entries


def snapshot(stage: Path) -> dict[str, tuple]:
    """Every path under the staging root: type, mode, and content hash or link target."""
    out = {}
    for path in sorted(stage.rglob("*")):
        st = path.lstat()
        rel = "/" + path.relative_to(stage).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("l", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("d", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("f", stat.S_IMODE(st.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def at(stage: Path, path: str) -> Path:
    return stage / path.lstrip("/")


# -- one install ----------------------------------------------------------------------------------


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_manifest_lists_every_path_with_owner_and_mode(stage, stubs):
    install(stage, stubs)
    assert BUNDLED, "models/ has no bundled model to install"
    assert manifest(stage) == EXPECTED


def test_the_tree_matches_the_manifest(stage, stubs):
    install(stage, stubs)
    for path, (kind, mode, _owner, _group) in manifest(stage).items():
        target = at(stage, path)
        st = target.lstat()
        if kind == "l":
            assert stat.S_ISLNK(st.st_mode), path
            assert os.readlink(target) == "/opt/ddsp-device/venv/bin/ddsp-device"
            continue
        assert (stat.S_ISDIR(st.st_mode) if kind == "d" else stat.S_ISREG(st.st_mode)), path
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {oct(stat.S_IMODE(st.st_mode))} != {oct(mode)}"
        if path in SOURCES:
            assert target.read_bytes() == SOURCES[path].read_bytes(), path
    # nothing else was written: only the directories leading to the listed paths
    listed = set(manifest(stage)) | {"/.install-manifest"}
    for path, entry in snapshot(stage).items():
        if entry[0] == "d" and path not in listed:
            assert any(p.startswith(path + "/") for p in listed), path
        else:
            assert path in listed, path


def test_next_steps_are_printed(stage, stubs):
    out = install(stage, stubs)
    for hint in ("raspi-config nonint do_i2c 0", "aplay -L", "audio.device", "ddsp-device calibrate",
                 "systemctl status ddsp-device", "i2c_arm_baudrate=400000", "dtoverlay=", "GOVERNOR=performance"):
        assert hint in out, hint


def test_governor_performance_adds_the_oneshot(stage, stubs):
    install(stage, stubs, GOVERNOR="performance")
    assert manifest(stage)["/usr/lib/systemd/system/ddsp-device-cpufreq.service"] == ("f", 0o644, *ROOT_OWNED)
    unit = at(stage, "/usr/lib/systemd/system/ddsp-device-cpufreq.service")
    assert unit.read_bytes() == SOURCES["/usr/lib/systemd/system/ddsp-device-cpufreq.service"].read_bytes()
    # a later install without GOVERNOR keeps it (and keeps it current)
    install(stage, stubs)
    assert "/usr/lib/systemd/system/ddsp-device-cpufreq.service" in manifest(stage)


def test_other_governors_are_refused(stage, stubs):
    result = installer(stage, stubs, GOVERNOR="ondemand")
    assert result.returncode != 0 and "GOVERNOR" in result.stderr
    assert not stage.exists() or not (stage / ".install-manifest").exists()


# -- twice, and with the user's changes ---------------------------------------------------------


def test_second_install_changes_nothing(stage, stubs):
    install(stage, stubs)
    first_manifest, first_tree = manifest(stage), snapshot(stage)
    out = install(stage, stubs)
    assert manifest(stage) == first_manifest
    assert snapshot(stage) == first_tree
    assert "installed " not in out and "created " not in out, out


def test_user_config_and_models_are_kept(stage, stubs):
    install(stage, stubs)
    config = at(stage, "/etc/ddsp-device/config.toml")
    edited = config.read_text().replace('device = "default"', 'device = "hw:CARD=sndrpihifiberry,DEV=0"')
    assert edited != config.read_text()
    config.write_text(edited)
    mine = at(stage, "/var/lib/ddsp-device/models/Mine.tflite")
    mine.write_bytes(b"the user's own model")
    replaced = at(stage, f"/var/lib/ddsp-device/models/{BUNDLED[0].name}")
    replaced.write_bytes(b"the user replaced a bundled model")

    out = install(stage, stubs)
    assert config.read_text() == edited
    assert mine.read_bytes() == b"the user's own model"
    assert replaced.read_bytes() == b"the user replaced a bundled model"
    assert "kept your /etc/ddsp-device/config.toml" in out
    assert f"kept /var/lib/ddsp-device/models/{BUNDLED[0].name}" in out


def test_a_deleted_bundled_model_comes_back_but_nothing_else(stage, stubs):
    install(stage, stubs)
    model = at(stage, f"/var/lib/ddsp-device/models/{BUNDLED[0].name}")
    model.unlink()
    install(stage, stubs)
    assert model.read_bytes() == BUNDLED[0].read_bytes()


def test_changed_packaged_defaults_are_reported_not_applied(stage, stubs):
    install(stage, stubs)
    config = at(stage, "/etc/ddsp-device/config.toml")
    config.write_text(config.read_text() + "\n# my edit\n")
    # as if the previous release had shipped other defaults
    previous = at(stage, "/etc/ddsp-device/config.toml.default")
    previous.write_text("# an older release's defaults\n")
    before = config.read_text()
    out = install(stage, stubs)
    assert config.read_text() == before
    assert "packaged defaults changed" in out
    assert "diff -u /etc/ddsp-device/config.toml /etc/ddsp-device/config.toml.default" in out
    assert previous.read_bytes() == SOURCES["/etc/ddsp-device/config.toml.default"].read_bytes()


# -- uninstall ------------------------------------------------------------------------------------


def test_uninstall_keeps_config_and_state(stage, stubs):
    install(stage, stubs, GOVERNOR="performance")
    at(stage, "/etc/ddsp-device/config.toml").write_text("# mine\n")
    at(stage, "/var/lib/ddsp-device/models/Mine.tflite").write_bytes(b"mine")
    at(stage, "/var/lib/ddsp-device/calibration.json").write_text("{}")

    result = installer(stage, stubs, "uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    for gone in ("/usr/lib/systemd/system/ddsp-device.service", "/usr/lib/systemd/system/ddsp-device-cpufreq.service",
                 "/usr/lib/sysusers.d/ddsp-device.conf", "/usr/lib/modules-load.d/ddsp-device.conf",
                 "/usr/local/bin/ddsp-device", "/opt/ddsp-device", "/.install-manifest"):
        assert not os.path.lexists(at(stage, gone)), gone
    assert at(stage, "/etc/ddsp-device/config.toml").read_text() == "# mine\n"
    assert at(stage, "/var/lib/ddsp-device/models/Mine.tflite").read_bytes() == b"mine"
    assert at(stage, "/var/lib/ddsp-device/calibration.json").exists()
    assert "PURGE=1" in result.stdout

    # installing again finds the kept files and leaves them
    out = install(stage, stubs)
    assert at(stage, "/etc/ddsp-device/config.toml").read_text() == "# mine\n"
    assert "kept your /etc/ddsp-device/config.toml" in out


def test_purge_removes_config_and_state(stage, stubs):
    install(stage, stubs)
    result = installer(stage, stubs, "uninstall", PURGE="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not at(stage, "/etc/ddsp-device").exists()
    assert not at(stage, "/var/lib/ddsp-device").exists()
    leftovers = [p for p, entry in snapshot(stage).items() if entry[0] != "d"]
    assert leftovers == []


def test_uninstall_leaves_a_foreign_ddsp_device_command(stage, stubs):
    install(stage, stubs)
    link = at(stage, "/usr/local/bin/ddsp-device")
    link.unlink()
    link.write_text("#!/bin/sh\n# someone else's\n")
    result = installer(stage, stubs, "uninstall")
    assert result.returncode == 0
    assert link.read_text() == "#!/bin/sh\n# someone else's\n"


# -- the Makefile targets and the real-system guard -----------------------------------------------


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_install_and_uninstall(stage, stubs):
    bin_dir, log = stubs
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k != "MFLAGS"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    for target, extra in (("install", []), ("uninstall", ["PURGE=1"])):
        result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), target, f"DESTDIR={stage}", "SKIP_VENV=1", *extra],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        if target == "install":
            assert manifest(stage) == EXPECTED
    assert not log.exists(), log.read_text() if log.exists() else ""
    assert not at(stage, "/etc/ddsp-device").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="as root this would install onto this machine")
def test_real_install_needs_root(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    result = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0 and "sudo" in result.stderr
