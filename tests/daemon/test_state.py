"""The state directory: atomic writes that survive a power cut, forgiving reads, the store."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from ddsp_device.daemon import state as state_mod
from ddsp_device.atomicfile import atomic_write_bytes, atomic_write_json, atomic_write_text
from ddsp_device.daemon.state import StateStore, read_json, remove_stale_temp_files


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- atomic writes --------------------------------------------------------------------------------


def test_atomic_write_creates_and_replaces(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    assert mode_of(target) == 0o640
    atomic_write_bytes(target, b"two" * 100_000)
    assert target.read_bytes() == b"two" * 100_000
    assert os.listdir(tmp_path) == ["a.bin"]  # no temp file left


def test_atomic_write_keeps_the_existing_mode(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    os.chmod(target, 0o600)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert mode_of(target) == 0o600
    atomic_write_text(target, "newer", mode=0o644)
    assert mode_of(target) == 0o644


def test_atomic_write_mode_ignores_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "f") == 0o640


def test_atomic_write_json_round_trips(tmp_path):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"b": [1, 2], "a": "é"})
    assert read_json(target) == {"a": "é", "b": [1, 2]}
    assert target.read_text(encoding="utf-8").endswith("\n")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"v": 1})

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_mod.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert read_json(target) == {"v": 1}
    assert os.listdir(tmp_path) == ["s.json"]


POWER_CUT = textwrap.dedent(
    """
    import os, sys
    from ddsp_device.daemon import state
    def cut(src, dst):
        os._exit(9)  # the power goes out after the temp file is written and synced, before the rename
    state.os.replace = cut
    store = state.StateStore(sys.argv[1])
    store.add("xruns", 1000)
    store.selected_model = "Broken"  # writes at once: dies inside
    """
)


def test_power_cut_between_write_and_rename(tmp_path, caplog):
    with StateStore(tmp_path) as store:
        store.selected_model = "Violin"
        store.add("xruns", 5)
    before = (tmp_path / "state.json").read_bytes()

    child = subprocess.run([sys.executable, "-c", POWER_CUT, str(tmp_path)], capture_output=True, timeout=60)
    assert child.returncode == 9, child.stderr.decode()

    assert (tmp_path / "state.json").read_bytes() == before  # the old file is intact
    leftovers = [name for name in os.listdir(tmp_path) if name != "state.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".state.json.") and leftovers[0].endswith(".tmp")
    assert json.loads((tmp_path / leftovers[0]).read_text())["selected_model"] == "Broken"

    with caplog.at_level(logging.WARNING):
        store = StateStore(tmp_path)
    assert store.selected_model == "Violin"  # the temp file is not mistaken for state
    assert store.counters == {"xruns": 5}
    assert os.listdir(tmp_path) == ["state.json"]  # and the dead writer's temp file is gone
    assert not caplog.records


def test_remove_stale_temp_files_spares_live_writers_and_other_files(tmp_path):
    mine = tmp_path / f".state.json.{os.getpid()}-0123abcd.tmp"
    live = tmp_path / f".state.json.{os.getppid()}-0123abcd.tmp"
    other = tmp_path / ".calibration.json.abc123.tmp"
    for path in (mine, live, other):
        path.write_text("{}")
    assert remove_stale_temp_files(tmp_path, "state.json") == [mine]
    assert live.exists() and other.exists()


# -- reading --------------------------------------------------------------------------------------


def test_read_json_missing_file_is_silent(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert read_json(tmp_path / "none.json", default={"a": 1}) == {"a": 1}
    assert not caplog.records


@pytest.mark.parametrize("content", [b"", b'{"selected_model": "Vio', b"\xff\xfe\x00garbage", b"[1, 2,"])
def test_read_json_corrupt_file_is_absent_with_one_warning(tmp_path, caplog, content):
    target = tmp_path / "state.json"
    target.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert read_json(target, default={}) == {}
    assert len(caplog.records) == 1
    assert str(target) in caplog.records[0].getMessage()


def test_read_json_default_is_not_shared(tmp_path):
    default = {"counters": {}}
    got = read_json(tmp_path / "none.json", default)
    got["counters"]["x"] = 1
    assert default == {"counters": {}}


# -- the store ------------------------------------------------------------------------------------


def test_store_defaults_to_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    store = StateStore()
    assert store.directory == tmp_path / "state"
    assert store.directory.is_dir()
    assert store.selected_model is None
    assert store.counters == {}
    store.close()


def test_selected_model_is_written_at_once(tmp_path):
    store = StateStore(tmp_path)
    store.selected_model = "Violin"
    assert read_json(tmp_path / "state.json")["selected_model"] == "Violin"
    assert StateStore(tmp_path).selected_model == "Violin"
    with pytest.raises(ValueError, match="selected_model"):
        store.selected_model = ""
    store.selected_model = None
    assert StateStore(tmp_path).selected_model is None


def test_counters_persist_at_intervals_and_at_close(tmp_path):
    now = [0.0]
    store = StateStore(tmp_path, save_interval_s=60.0, clock=lambda: now[0])
    store.add("starts")
    assert store.add("xruns", 3) == 3
    store.add("xruns", 2)
    store.set_counter("uptime_s", 10)
    assert store.counters == {"starts": 1, "xruns": 5, "uptime_s": 10}
    assert store.maybe_save() is False  # too soon
    assert not (tmp_path / "state.json").exists()
    now[0] = 61.0
    assert store.maybe_save() is True
    assert read_json(tmp_path / "state.json")["counters"] == {"starts": 1, "xruns": 5, "uptime_s": 10}
    assert store.maybe_save() is False  # nothing changed
    store.add("faults")
    now[0] = 70.0
    assert store.maybe_save() is False
    store.close()
    store.close()
    again = StateStore(tmp_path)
    assert again.counters == {"starts": 1, "xruns": 5, "uptime_s": 10, "faults": 1}
    assert again.counter("faults") == 1 and again.counter("never") == 0
    again.add("starts")
    assert again.counter("starts") == 2


def test_counters_returns_a_copy(tmp_path):
    store = StateStore(tmp_path)
    store.counters["xruns"] = 99
    assert store.counters == {}
    assert not store.dirty


def test_store_ignores_bad_fields_and_keeps_unknown_keys(tmp_path, caplog):
    (tmp_path / "state.json").write_text(
        json.dumps({"version": 2, "selected_model": 42, "counters": {"xruns": 7, "faults": "many"}, "future": [1]})
    )
    with caplog.at_level(logging.WARNING):
        store = StateStore(tmp_path)
    assert store.selected_model is None
    assert store.counters == {"xruns": 7}
    assert len(caplog.records) == 1 and "faults" in caplog.records[0].getMessage()
    store.selected_model = "Violin"
    doc = read_json(tmp_path / "state.json")
    assert doc["future"] == [1] and doc["version"] == 1


def test_store_starts_on_corrupt_file(tmp_path, caplog):
    (tmp_path / "state.json").write_bytes(b'{"selected_model": "Vi')
    with caplog.at_level(logging.WARNING):
        store = StateStore(tmp_path)
    assert store.selected_model is None and store.counters == {}
    assert len(caplog.records) == 1
    store.add("starts")
    store.close()
    assert read_json(tmp_path / "state.json")["counters"] == {"starts": 1}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_store_on_read_only_directory_warns_once_and_keeps_going(tmp_path, caplog):
    directory = tmp_path / "ro"
    directory.mkdir()
    os.chmod(directory, 0o500)
    try:
        now = [0.0]
        with caplog.at_level(logging.WARNING):
            store = StateStore(directory, save_interval_s=1.0, clock=lambda: now[0])
            store.selected_model = "Violin"
            store.add("xruns")
            now[0] = 5.0
            assert store.maybe_save() is False
            store.close()
        assert store.selected_model == "Violin"
        assert store.save_failures == 3
        assert len(caplog.records) == 1 and str(directory) in caplog.records[0].getMessage()
    finally:
        os.chmod(directory, 0o700)


def test_failed_saves_warn_once_and_retry_at_the_interval(tmp_path, caplog, monkeypatch):
    def refuse(path, obj, mode=None):
        raise PermissionError(13, "Permission denied")

    now = [0.0]
    store = StateStore(tmp_path, save_interval_s=10.0, clock=lambda: now[0])
    monkeypatch.setattr(state_mod, "atomic_write_json", refuse)
    with caplog.at_level(logging.INFO):
        store.selected_model = "Violin"
        store.add("xruns")
        now[0] = 5.0
        assert store.maybe_save() is False  # not retried before the interval
        assert store.save_failures == 1
        now[0] = 11.0
        assert store.maybe_save() is False
        assert store.save_failures == 2
        monkeypatch.undo()
        now[0] = 22.0
        assert store.maybe_save() is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Permission denied" in warnings[0].getMessage()
    assert any("saved again" in r.getMessage() for r in caplog.records)
    assert StateStore(tmp_path).selected_model == "Violin"


def test_store_on_unwritable_path_does_not_raise(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING):
        store = StateStore(blocker / "state")
        store.selected_model = "Violin"
        store.close()
    assert store.save_failures >= 1
    assert store.selected_model == "Violin"


def test_models_dir_created_on_demand(tmp_path):
    store = StateStore(tmp_path)
    assert not (tmp_path / "models").exists()
    assert store.models_dir == tmp_path / "models"
    assert (tmp_path / "models").is_dir()


def test_a_choice_made_by_another_process_is_seen_and_never_overwritten(tmp_path):
    """`models use` writes state.json from the CLI while the daemon's store saves counters."""
    daemon = StateStore(tmp_path)
    daemon.selected_model = "Violin"
    cli = StateStore(tmp_path)
    cli.selected_model = "Cello"
    daemon.add("xruns", 3)
    daemon.save()  # a counter save must not write "Violin" back
    assert StateStore(tmp_path).selected_model == "Cello"
    assert daemon.reload_selection() == "Cello"
    assert StateStore(tmp_path).counter("xruns") == 3
    daemon.selected_model = "Viola"  # the daemon's own choice (panel) is written
    assert StateStore(tmp_path).selected_model == "Viola"


# -- the selection is untrusted input (state.json is writable by the service's group) -------------


@pytest.mark.parametrize("hostile", ["../../../etc/passwd", "/etc/passwd", "models/../x", ".hidden", "x.tflite"])
def test_a_selection_that_is_not_a_model_name_is_refused(tmp_path, caplog, hostile):
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "selected_model": hostile}))
    with caplog.at_level(logging.WARNING):
        store = StateStore(tmp_path)
    assert store.selected_model is None  # never a path to open
    assert "selected_model" in caplog.text and "not a model name" in caplog.text
    from ddsp_device.errors import ModelError

    with pytest.raises(ModelError, match="selected_model"):
        store.reload_selection()  # the daemon refuses the reload that would use it
    with pytest.raises(ValueError):
        store.selected_model = hostile
