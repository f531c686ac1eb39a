#!/usr/bin/env bash
# The model tests (logits against transformers, IG against the Python library, optimised vs
# plain IG, interventions and edits) on the tch (libtorch) and wgpu builds, each in its own
# target folder. The default ndarray build runs them in `cargo test --workspace`.
#
#   scripts/test-backends.sh [tch] [wgpu]      # default: $KN_BACKENDS, else "tch wgpu"
#
# tch: installs torch==2.9.0 from PyPI into .cache/torch-venv (the libtorch tch 0.22 and
#      burn-tch 0.21 build against; about 5 GB with its CUDA libraries) and runs on its CPU.
# wgpu: runs on whatever Vulkan adapter there is; with none, installs Mesa's lavapipe
#      (Debian mesa-vulkan-drivers) when it can (root and apt-get), and says so otherwise.
# Needs the test models (scripts/fetch-test-models.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ $# -gt 0 ]; then backends="$*"; else backends="${KN_BACKENDS:-tch wgpu}"; fi

run_tch() {
  local venv="$root/.cache/torch-venv"
  if [ ! -f "$venv/.done" ]; then
    echo "installing torch==2.9.0 into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.9.0
    touch "$venv/.done"
  fi
  local torch_lib
  torch_lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    CARGO_TARGET_DIR="$root/target/tch" \
    cargo test -p kn-models --locked --no-default-features --features tch,hub ${KN_CARGO_TIMINGS:+--timings}
}

have_vulkan() {
  ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1
}

run_wgpu() {
  if ! have_vulkan; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "no Vulkan driver: installing Mesa's lavapipe (mesa-vulkan-drivers)" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    else
      echo "no Vulkan driver and no way to install one: install mesa-vulkan-drivers (lavapipe)" >&2
      return 1
    fi
  fi
  # Dependencies at opt-level 1, the workspace crates at 0, and no debug info: the arithmetic
  # runs in the Vulkan driver. Dependencies at 1 halved the build (23 min here instead of 43);
  # kn-models at 0 compiles in 18 s instead of about 150 s of its test binaries at 1, and its
  # tests ran no slower (68 s against 88 s, session 13). The antiberty_knowledge
  # test (IG over 15 prompts of a real model) takes over 15 min on lavapipe, and the SmolLM2
  # attributions (30 layers, 49k vocabulary) are heavier still: the parity tests run (SmolLM2's
  # logits and tokenizer included), the attribution tests of real models are left to the CPU builds.
  CARGO_TARGET_DIR="$root/target/wgpu" cargo test -p kn-models --locked --no-default-features --features wgpu,hub \
    --tests --config 'profile.dev.package."*".opt-level=1' --config 'profile.dev.package."*".debug=false' \
    --config 'profile.test.debug=false' --config 'profile.dev.opt-level=0' --config 'profile.test.opt-level=0' \
    ${KN_CARGO_TIMINGS:+--timings} \
    -- --skip antiberty_knowledge:: --skip smollm2_knowledge:: \
    --skip smollm2_integrated_gradients --skip smollm2_optimised
}

for b in $backends; do
  start=$(date +%s)
  case "$b" in
    tch) run_tch ;;
    wgpu) run_wgpu ;;
    *) echo "unknown backend '$b' (tch, wgpu)" >&2; exit 2 ;;
  esac
  echo "backend $b: $(( $(date +%s) - start )) s (build included)" >&2
done
