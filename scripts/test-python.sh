#!/usr/bin/env bash
# The Python package's tests: installs the pinned Python environment (scripts/requirements-fixtures.txt,
# EleutherAI's knowledge-neurons 0.0.2, pytest, maturin) into .cache/torch-venv when missing, builds and
# installs crates/kn-py into it (`pip install ./crates/kn-py`: maturin, dev-profile build, default
# CPU backend), then runs pytest on crates/kn-py/tests against the kn-cli of the test build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.cache/torch-venv"
py="$venv/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
if [ ! -x "$py" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$venv/.python-tests-done" ]; then
  echo "installing the Python test environment into $venv" >&2
  "${pip[@]}" -r scripts/requirements-fixtures.txt
  "${pip[@]}" --no-deps knowledge-neurons==0.0.2 einops tqdm
  "${pip[@]}" pytest==9.2.0 maturin==1.9.6
  # torch==2.9.0 is in: scripts/test-backends.sh need not reinstall it.
  touch "$venv/.python-tests-done" "$venv/.done"
fi
# No build isolation: maturin from the venv (pinned above), no download at every run. The dev
# profile (opt-level 1, dependencies at 3: the settings of `cargo test`, Cargo.toml), not the
# release build users get: it reuses most of the crates the Rust tests compiled (2 min 42 s
# here, where a release build compiles every crate again: kn-cli's took 8 min 27 s), and float
# results do not depend on the optimisation level (no fast-math), so what pytest checks is the
# same.
PATH="$venv/bin:$PATH" MATURIN_PEP517_ARGS="${MATURIN_PEP517_ARGS---profile dev}" \
  "${pip[@]}" --no-build-isolation --force-reinstall --no-deps ./crates/kn-py
[ -x target/debug/kn-cli ] || cargo build -p kn-cli
KN_CLI="${KN_CLI:-$root/target/debug/kn-cli}" "$py" -m pytest crates/kn-py/tests -q "$@"
