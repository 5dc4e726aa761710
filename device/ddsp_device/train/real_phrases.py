"""Real violin *performances* heard from a listening distance: to train on, and to judge on.

The Violin's recipe needs recordings of violinists playing music in rooms, not single notes from
a close microphone. The package registries carry none (models/README.md lists what was
searched); the openly licensed ones used here are movements of Bach's sonatas and partitas for
solo violin as collected by the **Bach Violin Dataset** (Hao-Wen Dong et al., ICASSP 2022;
github.com/salu133445/bach-violin-dataset, MIT code, each recording under its own licence,
listed in its ``audio.csv``). :data:`RECORDINGS` pins each file to one commit and its SHA-256
and gives it a **role**:

- ``train``: John Garner (Musopen, **CC BY 3.0**) BWV 1002 Double and Tempo di Borea, and MinJi
  Kim (YouTube, **CC BY 3.0**) BWV 1003 Allegro: 7.5 minutes of two players in two rooms. Their
  licences allow redistributing weights trained on them (with attribution: models/README.md).
- ``eval``: never trained on, and not used to tune the voicing: John Garner's BWV 1002 Double
  (mov. 8; the same player and room as his training movements), Oliver Colbentson (Musopen,
  **CC BY-NC 3.0**: fine to judge with, never to train on) BWV 1006 Menuets, Bourrée and Gigue, and
  Emil Telmányi (Musopen, **public domain**; a historical recording) BWV 1001 Adagio, 30 s.
  Three players, three rooms and microphones, 10.3 minutes.

MinJi Kim's BWV 1003 Andante is left out of both: it is two voices throughout (a melody over a
bass), which a monophonic model cannot play and a single f0 track cannot describe.

:func:`fetch_real_phrases` downloads each file (or copies it from ``from_dir``, a checkout of
that repository, for machines that reach only package registries), checks its SHA-256 and writes
``OUT/train/`` and ``OUT/eval/``, each with a ``SOURCES.json`` (provenance, licences, files)
that ``train prepare`` copies into its dataset. Standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ddsp_device.atomicfile import atomic_write_bytes, atomic_write_json
from ddsp_device.train.real_violin import FetchError, download

REPOSITORY = "salu133445/bach-violin-dataset"
COMMIT = "36d687439af24112722e9f0832dfe2157280883c"
BASE_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/"
SOURCES_FILE = "SOURCES.json"
ROLES = ("train", "eval")


@dataclass(frozen=True)
class Recording:
    path: str  # in the repository
    sha256: str
    violinist: str
    work: str
    licence: str  # SPDX-like
    source: str
    role: str


_GARNER = ("John Garner", "CC-BY-3.0", "Musopen (musopen.org), via the Bach Violin Dataset")
_KIM = ("MinJi Kim", "CC-BY-3.0", "YouTube (Creative Commons licence), via the Bach Violin Dataset")
_COLBENTSON = ("Oliver Colbentson", "CC-BY-NC-3.0", "Musopen (musopen.org), via the Bach Violin Dataset")
_TELMANYI = ("Emil Telmányi", "public domain", "Musopen (musopen.org), via the Bach Violin Dataset")

RECORDINGS = (
    Recording("bach-violin/audio/john-garner/john-garner_bwv1002_mov6.mp3",
              "76bb7094d56583d8d602988b6959ed9a798459ff6c0ce22afd2a7d40e1c3ee17",
              _GARNER[0], "BWV 1002, 6. Double (of the Sarabande)", _GARNER[1], _GARNER[2], "train"),
    Recording("bach-violin/audio/john-garner/john-garner_bwv1002_mov7.mp3",
              "760ef77b51e72c95024652e89076846e37ae7f5d99302533a6fea13485f74b15",
              _GARNER[0], "BWV 1002, 7. Tempo di Borea", _GARNER[1], _GARNER[2], "train"),
    Recording("bach-violin/audio/minji-kim/minji-kim_bwv1003_mov4.opus",
              "e307272ce22cb15961700a1d1b87fb0c77b92a99ab597f38963cc74f2337b71e",
              _KIM[0], "BWV 1003, 4. Allegro", _KIM[1], _KIM[2], "train"),
    Recording("bach-violin/audio/john-garner/john-garner_bwv1002_mov8.mp3",
              "9bfc1ebdd17ce65ce2768b87991092f0c05a9164f90a26983ab6631af6498dd1",
              _GARNER[0], "BWV 1002, 8. Double (of the Borea)", _GARNER[1], _GARNER[2], "eval"),
    *(Recording(f"bach-violin/audio/oliver-colbentson/oliver-colbentson_bwv1006_mov{n}.mp3", digest,
                _COLBENTSON[0], f"BWV 1006, {title}", _COLBENTSON[1], _COLBENTSON[2], "eval")
      for n, title, digest in (
          (4, "4. Menuet I", "06296cebc8f332c2b69f3b7dfd50fea36b449294583c2d92f69fee5dc181aa7c"),
          (5, "5. Menuet II", "428d1d516313f39b6d4acd8124893fd42c43360d7c3c5bef0623878741d0f806"),
          (6, "6. Bourrée", "b76aba2f1ef1dd410841d2a8ed99fdcf4ece7ca43eda54f1f452829f51a4f0de"),
          (7, "7. Gigue", "5412f9bd79d61e6852ab5844eaa8e326bc2ebe5e0d01f7d8db438aca76792218"))),
    Recording("docs/assets/audio/emil-telmanyi_bwv1001_trimmed_30sec.mp3",
              "ad5438c44c8c65446a3046728d43d771375d39edcdb792440d55046b1349606a",
              _TELMANYI[0], "BWV 1001, 1. Adagio (first 30 s)", _TELMANYI[1], _TELMANYI[2], "eval"),
)


def recordings(role: str) -> tuple[Recording, ...]:
    return tuple(r for r in RECORDINGS if r.role == role)


def _fetch_bytes(recording: Recording, from_dir: Optional[Path]) -> bytes:
    if from_dir is None:
        return download(BASE_URL + recording.path)
    path = from_dir / recording.path
    try:
        return path.read_bytes()
    except OSError as err:
        raise FetchError(f"{path}: cannot read ({err.strerror or err})") from None


def _sources(role: str, files: list[str]) -> dict:
    chosen = recordings(role)
    players = sorted({r.violinist for r in chosen})
    licences = sorted({r.licence for r in chosen})
    use = ("to train on" if role == "train" else
           "to judge models on (never trained on, not used to tune the voicing)")
    return {
        "kind": "real recordings",
        "provenance": (f"Real violin performances ({', '.join(players)}: movements of Bach's sonatas and partitas "
                       f"for solo violin, recorded in rooms at a listening distance) from the Bach Violin Dataset "
                       f"(github.com/{REPOSITORY} at {COMMIT[:12]}), {use}."),
        "licence": "; ".join(f"{r.violinist}, {r.work}: {r.licence}" for r in chosen),
        "licences": licences,
        "repository": {"name": REPOSITORY, "commit": COMMIT},
        "recordings": [{"file": Path(r.path).name, "path": r.path, "sha256": r.sha256, "violinist": r.violinist,
                        "work": r.work, "licence": r.licence, "source": r.source} for r in chosen],
        "files": files,
    }


def fetch_real_phrases(out_dir, from_dir=None) -> dict:
    """Fetch (or reuse) every recording into ``out_dir/<role>/``; returns ``{role: SOURCES}``.

    Files already there with the right SHA-256 are kept, so a second run downloads nothing.
    Raises :class:`FetchError` (one line) for a failed download, a wrong checksum or an
    unwritable directory; nothing is written for a file that fails its check.
    """
    out = Path(out_dir)
    source_dir = Path(from_dir) if from_dir is not None else None
    result = {}
    for role in ROLES:
        directory = out / role
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FetchError(f"{directory}: cannot create the directory ({err.strerror or err})") from None
        files = []
        for recording in recordings(role):
            target = directory / Path(recording.path).name
            if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == recording.sha256:
                files.append(target.name)
                continue
            data = _fetch_bytes(recording, source_dir)
            digest = hashlib.sha256(data).hexdigest()
            if digest != recording.sha256:
                raise FetchError(f"{recording.path}: sha256 is {digest}, expected {recording.sha256}; not using it")
            try:
                atomic_write_bytes(target, data)
            except OSError as err:
                raise FetchError(f"{target}: cannot write ({err.strerror or err})") from None
            files.append(target.name)
        sources = _sources(role, files)
        try:
            atomic_write_json(directory / SOURCES_FILE, sources)
        except OSError as err:
            raise FetchError(f"{directory / SOURCES_FILE}: cannot write ({err.strerror or err})") from None
        result[role] = sources
    return result


def describe(result: dict) -> str:
    return "; ".join(f"{role}: {len(s['files'])} recordings ({', '.join(s['licences'])})" for role, s in result.items())
