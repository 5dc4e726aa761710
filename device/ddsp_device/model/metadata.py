"""Model metadata: a zip holding ``metadata.json`` appended to the ``.tflite`` file.

This is the DDSP-VST convention (see ``models/README.md``, "Metadata"): the flatbuffer ignores
trailing bytes and :mod:`zipfile` finds the archive at the end of the file, whatever comes before
it. Standard library only; the training exporter imports :func:`append_metadata` from here.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import zipfile
from typing import Any, Mapping

from ddsp_device.errors import ModelError
from ddsp_device.model.flatbuffer import TFLITE_IDENTIFIER

log = logging.getLogger(__name__)

METADATA_MEMBER = "metadata.json"

# key -> (accepted JSON types, description used in messages). bool is refused where a number is
# expected even though it is an int subclass.
_KEY_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "sample_rate_hz": ((int,), "an integer"),
    "frame_rate_hz": ((int, float), "a number"),
    "f0_min_hz": ((int, float), "a number"),
    "f0_max_hz": ((int, float), "a number"),
    "loudness_min": ((int, float), "a number"),
    "loudness_max": ((int, float), "a number"),
    "licence": ((str,), "a string"),
    "provenance": ((str,), "a string"),
    "exported_at": ((str,), "a string"),
    "window_frames": ((int,), "an integer"),
}
KNOWN_KEYS = frozenset(_KEY_TYPES)

# A zip local file header (signature, 22 bytes, name length 13, extra length) naming
# metadata.json: its presence without an end-of-archive record means the file was cut short.
_ZIP_START = b"PK\x03\x04"
_LOCAL_HEADER = re.compile(rb"PK\x03\x04.{22}\x0d\x00..metadata\.json", re.DOTALL)
# Fixed zip timestamp so that the same metadata always gives the same bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def validate_metadata(metadata: Any, source: str = METADATA_MEMBER) -> dict[str, Any]:
    """Check the keys of a metadata object against the contract and return it as a new dict.

    Every known key must have its documented type (numbers finite; rates, ranges and
    ``window_frames`` sensible). Unknown keys pass through untouched. ``source`` prefixes the
    messages. Raises :class:`ModelError` naming every bad key.
    """
    if not isinstance(metadata, Mapping):
        raise ModelError(f"{source}: must hold a JSON object, not {type(metadata).__name__}")
    problems = []
    for key, value in metadata.items():
        if key not in _KEY_TYPES:
            continue
        types, wanted = _KEY_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, types):
            problems.append(f"{key}: must be {wanted}, not {json.dumps(value)}")
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}: must be finite, not {value}")
    for key in ("sample_rate_hz", "frame_rate_hz", "window_frames"):
        value = metadata.get(key)
        if _is_number(value) and value <= 0:
            problems.append(f"{key}: must be > 0, not {value}")
    for low, high in (("f0_min_hz", "f0_max_hz"), ("loudness_min", "loudness_max")):
        lo, hi = metadata.get(low), metadata.get(high)
        if _is_number(lo) and _is_number(hi) and not lo < hi:
            problems.append(f"{low}, {high}: need {low} < {high}, not {lo} >= {hi}")
    f0_min = metadata.get("f0_min_hz")
    if _is_number(f0_min) and f0_min <= 0:
        problems.append(f"f0_min_hz: must be > 0, not {f0_min}")
    if problems:
        raise ModelError(f"{source}: " + "; ".join(problems))
    return dict(metadata)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metadata_from_bytes(data: bytes, source: str, flatbuffer_size: int | None = None) -> dict[str, Any] | None:
    """Return the validated ``metadata.json`` of a model file's bytes, or None if it has none.

    ``source`` (usually the file path) names the file in messages; ``flatbuffer_size`` (from
    :func:`~ddsp_device.model.flatbuffer.check_flatbuffer`), when given, is where appended data
    starts. A file with no appended zip, or a zip without ``metadata.json``, has no metadata.
    A zip that is present but unreadable or cut short, or a ``metadata.json`` that is not
    UTF-8 JSON holding an object with correctly typed keys, raises :class:`ModelError`.
    """
    buffer = io.BytesIO(data)
    if not zipfile.is_zipfile(buffer):
        tail = data[flatbuffer_size:] if flatbuffer_size is not None else b""
        if _LOCAL_HEADER.search(data) or (tail and _ZIP_START.startswith(tail[:4])):
            raise ModelError(f"{source}: the metadata zip appended to the model is truncated (no end record)")
        if tail:
            log.warning("%s: ignoring %d bytes after the flatbuffer that are not a zip", source, len(tail))
        return None
    try:
        with zipfile.ZipFile(buffer) as archive:
            if METADATA_MEMBER not in archive.namelist():
                log.debug("%s: appended zip has no %s", source, METADATA_MEMBER)
                return None
            raw = archive.read(METADATA_MEMBER)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ModelError(f"{source}: appended metadata zip is unreadable: {err}") from err
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{source}: {METADATA_MEMBER} is not valid JSON: {err}") from err
    return validate_metadata(metadata, f"{source}: {METADATA_MEMBER}")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``metadata.json`` appended to the model at ``path``; ``{}`` for a bare file.

    Raises :class:`ModelError` if the file cannot be read or its metadata is present but bad
    (the message names the file and the key).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as err:
        raise ModelError(f"{path}: cannot read model file: {err.strerror or err}") from err
    return metadata_from_bytes(data, path) or {}


def append_metadata(tflite_bytes: bytes, metadata: Mapping[str, Any]) -> bytes:
    """Return ``tflite_bytes`` with a zip holding ``metadata`` as ``metadata.json`` appended.

    The metadata is validated first (:class:`ModelError` naming a bad key). The bytes must be a
    bare TFLite flatbuffer: appending to a file that already carries a zip is refused, so that a
    file never holds two archives. The output is deterministic (sorted keys, fixed timestamp,
    stored uncompressed); zip offsets are relative to the start of the file, as ``zip -A``
    writes them.
    """
    tflite_bytes = bytes(tflite_bytes)
    if tflite_bytes[4:8] != TFLITE_IDENTIFIER:
        raise ModelError("append_metadata: not a TFLite flatbuffer (no 'TFL3' identifier)")
    if zipfile.is_zipfile(io.BytesIO(tflite_bytes)):
        raise ModelError("append_metadata: the model already has an appended zip")
    metadata = validate_metadata(metadata, "append_metadata")
    text = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    buffer = io.BytesIO(tflite_bytes)
    with zipfile.ZipFile(buffer, mode="a", compression=zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo(METADATA_MEMBER, date_time=_ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        archive.writestr(info, text.encode("utf-8"))
    return buffer.getvalue()
