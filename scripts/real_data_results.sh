#!/usr/bin/env bash
# Reproduce the README's real-data results: build both MovieLens datasets from the mirror
# ($JIFR_MIRROR or ../shared/datasets), extract the poster features once, compare the models
# over seeds 0, 1, 2 on the test split, tune every model and compare it over seeds 0-4, and run
# the tuning sweeps on the validation split.
# Usage: scripts/real_data_results.sh [OUT_DIR]   (default runs/real; finished runs are reused)
set -euo pipefail
OUT=${1:-runs/real}
BUNDLES=$OUT/movielens-bundles
POSTERS=$OUT/movielens-100k-posters
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # torch threads stop spinning while waiting

[ -f "$BUNDLES/interactions.csv" ] || jifr datasets build movielens-bundles --out "$BUNDLES"
[ -f "$BUNDLES/frame_features.npy" ] || jifr features extract "$BUNDLES/item_frames.csv" --out "$BUNDLES"
[ -f "$POSTERS/interactions.csv" ] || jifr datasets build movielens-100k-posters --out "$POSTERS"
# Same posters, same frame ids (m<movie id>): the bundles' features serve both datasets.
[ -f "$POSTERS/frame_features.npy" ] || cp "$BUNDLES"/frame_features.{npy,ids.txt} "$POSTERS"/

jifr compare "$BUNDLES" --out "$OUT/compare-bundles" \
  --models pop,rnd,content_cosine,content_cosine_centered,bpr,vbpr,jifr_na,jifr_content_att,jifr_rating_att,jifr
jifr compare "$POSTERS" --out "$OUT/compare-posters" \
  --models pop,bpr,vbpr,jifr_na,jifr_content_att,jifr_rating_att,jifr

# The paper's comparison with every trained model tuned on the same budget (8 trials of jifr
# tune at validation seeds 0-1, trial 0 = defaults), then five seeds on the test split, and the
# paper's figures from each. Posters have one frame per item and no frame likes: items only.
TUNED=bpr,cdl,vbpr,vpoi,acf,jifr_na,jifr_content_att,jifr_rating_att,jifr
tuned() {  # dataset name, dataset directory, models compared
  jifr tune "$2" --out "$OUT/tune-$1" --trials 8 --seeds 0,1 --models $TUNED
  jifr compare "$2" --out "$OUT/tuned-$1" --seeds 0,1,2,3,4 --models "$3" \
    --settings-from "$OUT/tune-$1/best-settings.json"
  jifr report "$OUT/tuned-$1" --out "$OUT/report-tuned-$1" --force
}
tuned bundles "$BUNDLES" pop,rnd,content_cosine,content_cosine_centered,$TUNED
tuned posters "$POSTERS" pop,$TUNED

# JIFR's attention L2 on the validation split: W0 (l2_attention_input) and W1, w1, W2, w2
# (l2_attention). The defaults (0 and 0.3) were chosen from this sweep.
attention() {
  jifr compare "$BUNDLES" --out "$OUT/tune-attention/w0-$1-att-$2" --models jifr --part valid --no-references \
    --set l2_attention_input="$1" --set l2_attention="$2"
}
attention 0.1 0.1  # the earlier defaults
attention 0.01 0.1
attention 0.001 0.1
attention 0.1 0.01
for l2 in 0.01 0.03 0.1 0.3 1; do attention 0 "$l2"; done
python scripts/tuning_table.py --attention "$OUT/tune-attention"

# One setting changed at a time from the earlier defaults (attention L2 0.1 on W0 and on the
# attention networks), JIFR_NA and JIFR, scored on the validation split.
EARLIER_ATTENTION=(--set jifr.l2_attention_input=0.1 --set jifr.l2_attention=0.1)
tune() {
  local name=$1
  shift
  jifr compare "$BUNDLES" --out "$OUT/tune/$name" --models jifr_na,jifr --part valid --no-references \
    "${EARLIER_ATTENTION[@]}" "$@"
}
tune defaults
tune lr-0.001 --lr 0.001
tune lr-0.02 --lr 0.02
tune d-16 --set collab_dim=16 --set visual_dim=16
tune d-64 --set collab_dim=64 --set visual_dim=64
tune l2-0.0001 --set l2=0.0001
tune l2-0.01 --set l2=0.01
tune l2-projection-0.001 --set l2_projection=0.001
tune l2-projection-0.1 --set l2_projection=0.1
tune l2-attention-0.01 --set jifr.l2_attention=0.01 --set jifr.l2_attention_input=0.01  # later --set wins
tune l2-attention-1 --set jifr.l2_attention=1 --set jifr.l2_attention_input=1
tune paper-l2-everywhere --set l2_projection=0.001 --set jifr.l2_attention=0.001 --set jifr.l2_attention_input=0.001
tune patience-15-epochs-100 --epochs 100 --patience 15
python scripts/tuning_table.py "$OUT/tune"
