#!/usr/bin/env bash
# Key frames against planted taste strength: build movielens-bundles-planted at S = 0 .. 1, reuse
# the bundles' poster features (same posters, same frame ids), and compare the key-frame models
# over seeds 0, 1, 2 on the test split. Then draw the figure with scripts/curve_figure.py dose-response.
# Usage: scripts/dose_response.sh BUNDLES_DIR_WITH_FEATURES [OUT_DIR]   (finished runs are reused)
set -euo pipefail
BUNDLES=$1
OUT=${2:-runs/dose-response}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
for taste in 0 0.25 0.5 0.75 1; do
  data=$OUT/planted-$taste
  [ -f "$data/interactions.csv" ] || jifr datasets build movielens-bundles-planted --out "$data" --taste "$taste"
  [ -f "$data/frame_features.npy" ] || cp "$BUNDLES"/frame_features.{npy,ids.txt} "$data"/
  jifr compare "$data" --out "$OUT/compare-$taste" --models rnd,content_cosine_centered,vbpr,jifr_na,jifr \
    --no-progress
done
