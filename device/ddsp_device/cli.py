"""``ddsp-device``: the command line.

User mistakes (a bad config key, a broken model, a malformed CSV) end in one ``error:`` line that
names the problem and a non-zero exit status, never a traceback. Exit status: 0 success, 1 an
error at run time (model, audio, controls), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

# The engine is single-threaded by design: keep BLAS from spawning threads behind our back.
# Must happen before numpy is first imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

log = logging.getLogger("ddsp_device")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 128 + 15  # SIGTERM, as a shell reports it

#: ``render``'s default bound on the audio it writes (last row plus tail), s: an hour.
DEFAULT_MAX_RENDER_S = 3600.0
#: The most ``--max-seconds`` may allow: 12 h fits a WAV file (4 GiB) at 48 kHz.
MAX_RENDER_S = 12 * 3600.0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="config file read after /etc/ddsp-device/config.toml")
    p.add_argument(
        "-o", "--option", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. -o audio.period_size=256",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME|PATH", help="model name or .tflite path (default: [model] name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddsp-device",
        description="A neural instrument in a box: controls -> int8 DDSP model -> harmonic+noise synth -> audio.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("render", help="render a performance CSV (time_s,f0_hz,loudness) to a WAV file")
    p.add_argument("--controls", required=True, metavar="CSV", help="CSV with header time_s,f0_hz,loudness")
    p.add_argument("--out", required=True, metavar="WAV", help="16-bit mono WAV to write")
    _add_model_args(p)
    p.add_argument("--sample-rate", type=int, choices=(44100, 48000), metavar="HZ", help="output rate (default: [audio] sample_rate)")
    p.add_argument("--period", type=int, metavar="FRAMES", help="period size to render in (default: [audio] period_size)")
    p.add_argument("--tail", type=float, default=1.0, metavar="S", help="seconds rendered after the last row, loudness 0 (default 1.0)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_RENDER_S, metavar="S",
                   help=f"refuse a render longer than this, last row plus tail (default {DEFAULT_MAX_RENDER_S:g}; "
                        f"at most {MAX_RENDER_S:g})")
    _add_config_args(p)

    p = sub.add_parser("demo", help="render the built-in phrase to demo.wav and play it if a sound card is present")
    p.add_argument("--out", default="demo.wav", metavar="WAV", help="WAV to write (default demo.wav)")
    _add_model_args(p)
    p.add_argument("--no-play", action="store_true", help="only write the file")
    p.add_argument("--write-csv", metavar="CSV", help="also write the phrase as a performance CSV")
    _add_config_args(p)

    p = sub.add_parser("bench", help="measure the engine on this machine (single-threaded)")
    _add_model_args(p)
    p.add_argument("--period", type=int, metavar="FRAMES", help="period size (default: [audio] period_size)")
    p.add_argument("--seconds", type=float, default=20.0, metavar="S", help="audio seconds to render (default 20)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_config_args(p)

    p = sub.add_parser("run", help="the daemon: play the sensors through the model to ALSA until SIGTERM")
    p.add_argument("--out", metavar="WAV", help="write to a WAV file (in real time) instead of ALSA")
    p.add_argument("--emulate", action="store_true", help="emulated sensors playing by themselves (no I2C)")
    p.add_argument("--seconds", type=float, metavar="S", help="stop by itself after S seconds")
    _add_config_args(p)

    p = sub.add_parser("soak", help="run the whole daemon with injected faults and report (burn-in: --hardware --faults none)")
    p.add_argument("--seconds", type=float, required=True, metavar="N", help="seconds of audio to run")
    p.add_argument("--faults", default="i2c=0.01,xrun=0.05,model=0.05", metavar="SPEC",
                   help="i2c=RATE,xrun=RATE,model=RATE or none (default i2c=0.01,xrun=0.05,model=0.05)")
    p.add_argument("--hardware", action="store_true", help="the configured sensors and ALSA device, in real time")
    p.add_argument("--out", metavar="WAV", help="also write the audio to a WAV file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_config_args(p)

    p = sub.add_parser("status", help="ask the running daemon how it is doing")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--socket", metavar="PATH", help="status socket (default: the runtime directory's)")

    p = sub.add_parser("monitor", help="live readout of the sensors, f0, loudness and knobs")
    p.add_argument("--emulate", action="store_true", help="an emulated build playing by itself (no hardware)")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=20.0, metavar="HZ", help="updates per second (default 20)")
    _add_config_args(p)

    p = sub.add_parser("calibrate", help="guided calibration of the ribbon, pressure sensor and knobs")
    p.add_argument("--emulate", action="store_true", help="an emulated build that acts out each step (no hardware)")
    p.add_argument("--step-seconds", type=float, metavar="S",
                   help="collect each step for S seconds instead of waiting for Enter")
    p.add_argument("--out", metavar="FILE", help="where to save (default: <state dir>/calibration.json)")
    _add_config_args(p)

    from . import models_cli

    models_cli.add_parser(sub, add_config_args=_add_config_args)

    from .train import commands as train_commands

    train_commands.add_parser(sub)

    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    csub.required = True
    c = csub.add_parser("check", help="validate the configuration and print the effective values")
    c.add_argument("file", nargs="?", metavar="FILE", help="config file to check (as --config)")
    c.add_argument("--config", dest="config_opt", metavar="FILE", help=argparse.SUPPRESS)
    c.add_argument("-o", "--option", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    return parser


# ----------------------------------------------------------------------------- helpers
def _load_config(args):
    from .config import load_config

    return load_config(args.config, args.overrides)


def _engine(cfg, model: str | None, sample_rate: int | None = None):
    from .engine import Engine, EngineSettings
    from .library import model_defaults

    defaults = model_defaults(cfg)
    settings = EngineSettings.from_config(cfg, sample_rate=sample_rate)
    return Engine.load(
        model or cfg.model.name, settings,
        directory=cfg.model.directory or None, runtime=cfg.model.runtime, defaults=defaults,
    )


def render_performance(engine, frames, sink, period: int) -> dict:
    """Render per-frame controls through ``engine`` into ``sink``, period by period.

    Returns the peak (dBFS) and the number of samples written.
    """
    import numpy as np

    out = np.empty(period, np.float32)
    peak = 0.0
    written = 0
    total = frames.n_samples
    while written < total:
        engine.render(out, frames)
        n = min(period, total - written)
        block = out[:n]
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
        sink.write(block)
        written += n
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    return {"samples": written, "peak_dbfs": peak_dbfs}


# ----------------------------------------------------------------------------- commands
def _check_period(period: int) -> None:
    """``--period`` takes the range of ``audio.period_size``: one rule, kept in the config schema."""
    from .config import SCHEMA

    problem = SCHEMA["audio"].keys["period_size"].validate(period)
    if problem is not None:
        raise _UsageError(f"--period: {problem}")


def _same_file(a, b) -> bool:
    """``a`` and ``b`` name the same file (existing: same inode; else the same resolved path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        from pathlib import Path

        return Path(a).resolve() == Path(b).resolve()


def _refuse_overwriting_inputs(out: str, option: str, inputs: dict) -> None:
    """``--out`` must not name a file this command reads (``inputs``: option -> path)."""
    for name, path in inputs.items():
        if path and _same_file(out, path):
            raise _UsageError(f"{option}: {out} is also {name}; choose another output file")


class Terminated(BaseException):
    """SIGTERM arrived while a command was writing (raised from the signal handler)."""


@contextlib.contextmanager
def _sigterm_raises():
    """While writing a file: SIGTERM raises :class:`Terminated` so the file is cleaned up."""
    import signal

    def on_term(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_performance(engine, frames, out: str, period: int) -> dict:
    """Render into ``out`` atomically: the complete file, or ``out`` left as it was."""
    from .audio.sinks import WavSink

    try:
        with _sigterm_raises(), WavSink(out, engine.sample_rate, max_block=period, atomic=True) as sink:
            return render_performance(engine, frames, sink, period)
    except (KeyboardInterrupt, Terminated):
        print(f"error: interrupted; {out} was not written", file=sys.stderr)
        raise


def _warn_out_of_range(performance, engine, where: str) -> None:
    """One warning when the controls leave the model's pitch range (it hears them clamped)."""
    found = performance.out_of_range(engine.f0_min_hz, engine.f0_max_hz)
    if found is None:
        return
    row, f0_hz = found
    above_nyquist = " (at or above Nyquist, silent)" if f0_hz >= engine.nyquist_hz else ""
    print(
        f"warning: {where}: line {row + 1}: f0_hz {f0_hz:g}{above_nyquist} is outside model "
        f"{engine.model.info.name}'s range {engine.f0_min_hz:.0f}..{engine.f0_max_hz:.0f} Hz; "
        "the model hears the nearest end of its range (first of such rows; no more warnings)",
        file=sys.stderr,
    )


def cmd_render(args) -> int:
    import math

    from .performance import read_csv

    if not (math.isfinite(args.max_seconds) and 0 < args.max_seconds <= MAX_RENDER_S):
        raise _UsageError(f"--max-seconds: must be > 0 and at most {MAX_RENDER_S:g}, got {args.max_seconds:g}")
    if not (math.isfinite(args.tail) and 0 <= args.tail <= args.max_seconds):
        raise _UsageError(f"--tail: must be between 0 and --max-seconds ({args.max_seconds:g}), got {args.tail:g}")
    cfg = _load_config(args)
    period = args.period or cfg.audio.period_size
    _check_period(period)
    _refuse_overwriting_inputs(args.out, "--out", {"--controls": args.controls, "--config": args.config})
    performance = read_csv(args.controls)
    total_s = performance.duration_s + args.tail
    if total_s > args.max_seconds:
        raise _UsageError(
            f"{args.controls}: line {len(performance.time_s) + 1}: time_s {performance.duration_s:g} plus "
            f"--tail {args.tail:g} makes {total_s:g} s of audio, more than --max-seconds {args.max_seconds:g}"
        )
    with _engine(cfg, args.model, args.sample_rate) as engine:
        _refuse_overwriting_inputs(args.out, "--out", {"the model file": engine.model.info.path})
        _warn_out_of_range(performance, engine, args.controls)
        frames = performance.frames(engine.hop, engine.sample_rate, tail_s=args.tail)
        result = _write_performance(engine, frames, args.out, period)
        print(
            f"wrote {args.out}: {result['samples'] / engine.sample_rate:.2f} s at {engine.sample_rate} Hz, "
            f"peak {result['peak_dbfs']:.1f} dBFS, model {engine.model.info.name}"
        )
    return 0


def cmd_demo(args) -> int:
    import time

    from .audio.sinks import read_wav
    from .performance import demo_phrase, write_csv

    cfg = _load_config(args)
    if args.write_csv:
        _refuse_overwriting_inputs(args.out, "--out", {"--write-csv": args.write_csv})
    _refuse_overwriting_inputs(args.out, "--out", {"--config": args.config})
    phrase = demo_phrase()
    if args.write_csv:
        write_csv(phrase, args.write_csv)
    period = cfg.audio.period_size
    with _engine(cfg, args.model) as engine:
        _refuse_overwriting_inputs(args.out, "--out", {"the model file": engine.model.info.path})
        frames = phrase.frames(engine.hop, engine.sample_rate, tail_s=1.0)
        t0 = time.perf_counter()
        result = _write_performance(engine, frames, args.out, period)
        elapsed = time.perf_counter() - t0
        seconds = result["samples"] / engine.sample_rate
        info = engine.model.info
        print(
            f"wrote {args.out}: {seconds:.2f} s of the built-in phrase at {engine.sample_rate} Hz, "
            f"model {info.name} ({info.runtime_name}), peak {result['peak_dbfs']:.1f} dBFS, "
            f"rendered in {elapsed:.2f} s ({seconds / elapsed:.0f}x real time)"
        )
    if args.no_play:
        return 0
    from .audio.alsa import sound_cards

    cards = sound_cards()
    if not cards:
        print("no sound card found (/proc/asound/cards); not playing. Copy demo.wav somewhere with speakers.")
        return 0
    from .audio.alsa import AlsaSink

    audio, rate = read_wav(args.out)
    print(f"playing on ALSA {cfg.audio.device!r} (cards: {', '.join(cards)})")
    with AlsaSink(cfg.audio.device, rate, max(cfg.audio.period_size, 1024), 4) as sink:
        step = sink.period_size
        for i in range(0, len(audio), step):
            sink.write(audio[i : i + step])
    return 0


def cmd_bench(args) -> int:
    from .bench import format_report, run_bench

    from .controls.rig import nominal_sensor_rate_hz

    cfg = _load_config(args)
    period = args.period or cfg.audio.period_size
    _check_period(period)
    if not args.seconds > 0:
        raise _UsageError(f"--seconds: must be > 0, got {args.seconds:g}")
    with _engine(cfg, args.model) as engine:
        report = run_bench(
            engine, period_size=period, seconds=args.seconds, periods=cfg.audio.periods,
            sensor_rate_hz=nominal_sensor_rate_hz(cfg),
        )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_run(args) -> int:
    from .daemon.service import RunOptions, run_service

    if args.seconds is not None and not args.seconds > 0:
        raise _UsageError(f"--seconds: must be > 0, got {args.seconds:g}")
    return run_service(RunOptions(config_file=args.config, overrides=args.overrides, out_wav=args.out,
                                  emulate=args.emulate, seconds=args.seconds))


def cmd_soak(args) -> int:
    from .daemon.soak import Faults, Soak, format_report

    if not args.seconds > 0:
        raise _UsageError(f"--seconds: must be > 0, got {args.seconds:g}")
    try:
        faults = Faults.parse(args.faults)
    except ValueError as err:
        raise _UsageError(str(err)) from None
    soak = Soak(args.seconds, faults, config_file=args.config, overrides=args.overrides, out_wav=args.out,
                hardware=args.hardware)
    try:
        report = soak.run()
    finally:
        soak.close()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["pass"] else EXIT_ERROR


def cmd_status(args) -> int:
    from .daemon.status import format_status, query_status

    status = query_status(args.socket)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_monitor(args) -> int:
    from .controls.tools import monitor_command

    if not args.rate > 0:
        raise _UsageError(f"--rate: must be > 0, got {args.rate:g}")
    if args.seconds is not None and not args.seconds > 0:
        raise _UsageError(f"--seconds: must be > 0, got {args.seconds:g}")
    return monitor_command(_load_config(args), sys.stdout, emulate=args.emulate, seconds=args.seconds,
                           rate_hz=args.rate)


def cmd_calibrate(args) -> int:
    from .controls.tools import calibrate_command

    if args.step_seconds is not None and not (args.step_seconds > 0 and args.step_seconds <= 3600):
        raise _UsageError(f"--step-seconds: must be > 0 and at most 3600, got {args.step_seconds:g}")
    if args.step_seconds is None and not _is_terminal(sys.stdin):
        raise _UsageError("calibrate: each step waits for Enter, and standard input is not a terminal "
                          "(ssh -t gives one); or collect each step for S seconds with --step-seconds S")
    return calibrate_command(_load_config(args), sys.stdout, emulate=args.emulate,
                             step_seconds=args.step_seconds, path=args.out)


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


def cmd_config(args) -> int:
    from .config import check_main

    if args.config_command == "check":
        return check_main(args.file or args.config_opt, args.overrides)
    raise _UsageError(f"config: unknown subcommand {args.config_command!r}")


class _UsageError(Exception):
    pass


COMMANDS = {
    "render": cmd_render, "demo": cmd_demo, "bench": cmd_bench, "run": cmd_run, "soak": cmd_soak, "status": cmd_status,
    "monitor": cmd_monitor,
    "calibrate": cmd_calibrate, "config": cmd_config, "models": lambda args: _models(args),
    "train": lambda args: _train(args),
}


def _train(args) -> int:
    from .train import commands

    try:
        return commands.run(args)
    except ValueError as err:  # PrepareError, DatasetError: every problem named
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


def _models(args) -> int:
    from . import models_cli

    return models_cli.run(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .errors import ConfigError, DdspDeviceError

    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except _UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except DdspDeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return EXIT_TERMINATED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
