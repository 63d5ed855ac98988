#!/usr/bin/env bash
# Key frames against the amount of logged frame feedback: build movielens-bundles with its
# frame_feedback table, reuse the bundles' poster features (same posters, same frame ids), and
# compare the models over seeds 0, 1, 2 on the test split using 0, 10, 25, 50 and 100 % of the
# training pairs' frame feedback (a seeded subset per seed; at 0 the models are exactly the
# models without feedback). Then draw the figure with scripts/curve_figure.py feedback.
# Usage: scripts/feedback_curve.sh BUNDLES_DIR_WITH_FEATURES [OUT_DIR]   (finished runs are reused)
set -euo pipefail
BUNDLES=$1
OUT=${2:-runs/feedback-curve}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
data=$OUT/bundles-feedback
[ -f "$data/frame_feedback.csv" ] || jifr datasets build movielens-bundles --frame-feedback --out "$data"
[ -f "$data/frame_features.npy" ] || cp "$BUNDLES"/frame_features.{npy,ids.txt} "$data"/
for share in 0 0.1 0.25 0.5 1; do
  jifr compare "$data" --out "$OUT/compare-$share" --models vbpr,jifr_na,jifr --frame-feedback-share "$share" \
    --no-progress
done
