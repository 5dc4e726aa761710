"""Fetching the real violin performances: checksums, roles kept apart, licences recorded, one-line errors.

The files are served from a local folder laid out as the repository (``--from``), and, for the
download path, from ``file://`` URLs: CI has no promise of reaching the repository.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from ddsp_device.train import real_phrases as rp
from ddsp_device.train.real_violin import FetchError


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A fake checkout holding one small file per recording, with the table pointed at it."""
    root = tmp_path / "checkout"
    table = []
    for recording in rp.RECORDINGS:
        data = f"audio of {recording.path}".encode()
        path = root / recording.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        table.append(rp.Recording(**{**recording.__dict__, "sha256": hashlib.sha256(data).hexdigest()}))
    monkeypatch.setattr(rp, "RECORDINGS", tuple(table))
    return root


def test_no_recording_is_both_trained_on_and_judged_on():
    train = {r.path for r in rp.recordings("train")}
    judge = {r.path for r in rp.recordings("eval")}
    assert train and judge and not train & judge
    assert all(r.licence in ("CC-BY-3.0", "public domain") for r in rp.recordings("train"))  # weights redistributable
    assert all("NC" not in r.licence for r in rp.recordings("train"))
    assert len({r.violinist for r in rp.recordings("eval")}) >= 3
    assert not any("urmp" in r.path.lower() for r in rp.RECORDINGS)


def test_fetch_from_a_checkout_writes_both_roles_with_licences(tmp_path, repository):
    out = tmp_path / "phrases"
    result = rp.fetch_real_phrases(out, from_dir=repository)
    for role in rp.ROLES:
        names = sorted(p.name for p in (out / role).iterdir())
        expected = sorted([r.path.rsplit("/", 1)[1] for r in rp.recordings(role)] + ["SOURCES.json"])
        assert names == expected
        on_disk = json.loads((out / role / "SOURCES.json").read_text())
        assert on_disk == result[role]
        assert on_disk["kind"] == "real recordings" and rp.COMMIT[:12] in on_disk["provenance"]
        assert all(entry["licence"] and entry["violinist"] for entry in on_disk["recordings"])
    assert "CC-BY-NC-3.0" in result["eval"]["licences"] and "CC-BY-NC-3.0" not in result["train"]["licences"]
    assert "train: 3 recordings" in rp.describe(result)
    # a second run reuses what is there: it needs no source at all
    again = rp.fetch_real_phrases(out, from_dir=tmp_path / "nowhere")
    assert again == result


def test_a_wrong_checksum_is_refused_and_nothing_written(tmp_path, repository):
    victim = rp.recordings("eval")[0]
    (repository / victim.path).write_bytes(b"tampered")
    out = tmp_path / "phrases"
    with pytest.raises(FetchError, match=r"sha256 is [0-9a-f]{64}, expected"):
        rp.fetch_real_phrases(out, from_dir=repository)
    assert not (out / "eval" / victim.path.rsplit("/", 1)[1]).exists()


def test_download_path_and_one_line_errors(tmp_path, repository, monkeypatch):
    monkeypatch.setattr(rp, "BASE_URL", repository.as_uri() + "/")
    result = rp.fetch_real_phrases(tmp_path / "downloaded")
    assert len(result["train"]["files"]) == len(rp.recordings("train"))
    with pytest.raises(FetchError, match="cannot read"):
        rp.fetch_real_phrases(tmp_path / "other", from_dir=tmp_path / "missing")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FetchError, match="cannot create the directory"):
        rp.fetch_real_phrases(blocker / "sub", from_dir=repository)
