"""Finding a TFLite interpreter: tflite-runtime (Bookworm) or ai-edge-litert (Trixie).

The only module in ddsp-device that imports ``tflite_runtime`` or ``ai_edge_litert``, and only
when :func:`import_interpreter` is called (never at package import).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
from typing import Any, Iterator

from ddsp_device.errors import RuntimeUnavailableError

log = logging.getLogger(__name__)

#: Runtime names in the order ``"auto"`` tries them, each with the module holding ``Interpreter``.
RUNTIMES: dict[str, str] = {
    "tflite-runtime": "tflite_runtime.interpreter",
    "ai-edge-litert": "ai_edge_litert.interpreter",
}
RUNTIME_CHOICES = ("auto", *RUNTIMES)
#: Environment variable that forces a runtime when the caller asks for ``"auto"``.
RUNTIME_ENV = "DDSP_DEVICE_RUNTIME"


def import_interpreter(runtime: str = "auto") -> tuple[Any, str]:
    """Import and return ``(Interpreter class, runtime name)``.

    ``runtime`` is ``"auto"``, ``"tflite-runtime"`` or ``"ai-edge-litert"``. With ``"auto"``,
    ``$DDSP_DEVICE_RUNTIME`` (if set and not ``auto``) picks one; otherwise each runtime in
    :data:`RUNTIMES` order is tried. Raises :class:`RuntimeUnavailableError` listing each runtime
    tried and why it failed (also for an unknown name).
    """
    requested, origin = runtime, "runtime"
    if runtime == "auto":
        forced = os.environ.get(RUNTIME_ENV, "").strip()
        if forced and forced != "auto":
            requested, origin = forced, f"${RUNTIME_ENV}"
    if requested == "auto":
        names = list(RUNTIMES)
    elif requested in RUNTIMES:
        names = [requested]
    else:
        choices = ", ".join(RUNTIME_CHOICES)
        raise RuntimeUnavailableError(f"{origin}: unknown runtime {requested!r}; choose one of {choices}")

    failures = []
    for name in names:
        module_name = RUNTIMES[name]
        try:
            module = importlib.import_module(module_name)
            interpreter_class = module.Interpreter
        except Exception as err:  # noqa: BLE001 - any import failure (ImportError, numpy ABI) is a reason
            failures.append(f"{name} ({module_name}): {type(err).__name__}: {err}")
            continue
        log.debug("using TFLite runtime %s (%s)", name, module_name)
        return interpreter_class, name
    tried = "; ".join(failures)
    hint = "install tflite-runtime (Python <= 3.11, numpy<2) or ai-edge-litert"
    raise RuntimeUnavailableError(f"no TFLite runtime could be imported: {tried}. {hint}")


#: Lines the native runtimes print on fd 2 that say nothing to a user (dropped by
#: :func:`quiet_native_stderr`).
NATIVE_NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
_stderr_lock = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr(drop: tuple[bytes, ...] = NATIVE_NOISE) -> Iterator[None]:
    """Drop the runtime's ``INFO: Created … XNNPACK delegate`` line while a model is created.

    The runtimes print it from C++ straight to file descriptor 2, with no option to turn it off
    (``TF_CPP_MIN_LOG_LEVEL`` does not reach TFLite's minimal logging). For the duration of the
    block fd 2 goes to a temp file; afterwards every line in it except those in ``drop`` is
    written to the real fd 2, so warnings and errors (and log lines from other threads in the
    meantime) still appear, only later. Does nothing when fd 2 cannot be duplicated.
    """
    with _stderr_lock:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        try:
            capture = tempfile.TemporaryFile()
        except OSError:
            os.close(saved)
            yield
            return
        with capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (AttributeError, OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True)
                        if line.rstrip(b"\r\n") not in drop]
                if kept:
                    try:
                        os.write(2, b"".join(kept))
                    except OSError:
                        pass
