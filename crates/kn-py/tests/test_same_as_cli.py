"""The package returns kn-cli's numbers, bit for bit: the same core, the same settings."""

import json

import numpy as np
import pytest
from conftest import cli, kn_cli

from knowledge_neurons_rs import KnowledgeNeurons

CASES = [
    ("tiny_bert", "the capital of france is [MASK] .", "paris", "london",
     ["the capital of france is [MASK] .", "[MASK] is the capital of france .", "france ' s capital is [MASK] ."]),
    ("smollm2", "The capital of France is", "Paris", "London",
     ["The capital of France is", "The capital city of France is", "The French capital is"]),
]


@pytest.mark.parametrize("case", CASES, ids=["tiny-bert", "smollm2-gguf"])
def test_scores_neurons_and_interventions_equal_kn_cli(case, request, tmp_path):
    name, prompt, target, new_target, prompts = case
    model_path = request.getfixturevalue(name)
    kn = KnowledgeNeurons.from_pretrained(str(model_path))

    scores = kn.get_scores(prompt, target, batch_size=10, steps=20)
    ref = cli("attribute", "-m", model_path, "--prompt", prompt, "--target", target, "--steps", 20, "--batch-size", 10, "--quiet")
    assert np.array_equal(scores, np.array(ref["scores"], dtype=np.float32)), "get_scores differs from kn-cli attribute"

    pfile = tmp_path / "prompts.txt"
    pfile.write_text("\n".join(prompts) + "\n")
    neurons = kn.get_refined_neurons(prompts, target, p=0.5, batch_size=10, steps=20, quiet=True)
    ref = cli("neurons", "-m", model_path, "--prompts", pfile, "--target", target, "--p", 0.5,
              "--adaptive-threshold", 0.3, "--steps", 20, "--batch-size", 10, "--quiet")
    assert neurons == ref["neurons"]
    assert neurons, "no refined neuron to intervene on"
    nfile = tmp_path / "neurons.json"
    nfile.write_text(json.dumps(neurons))

    def same(ours, theirs):
        for side in ("before", "after"):
            assert ours[side]["gt_prob"] == theirs[side]["gt_prob"]
            assert ours[side]["argmax_prob"] == theirs[side]["argmax_prob"]
            assert ours[side]["argmax_ids"] == theirs[side]["argmax_ids"]

    r, _ = kn.suppress_knowledge(prompt, target, neurons, quiet=True)
    same(r, cli("suppress", "-m", model_path, "--prompt", prompt, "--target", target, "--neurons", nfile))
    r, _ = kn.enhance_knowledge(prompt, target, neurons, quiet=True)
    same(r, cli("enhance", "-m", model_path, "--prompt", prompt, "--target", target, "--neurons", nfile))
    r, _ = kn.erase_knowledge(prompt, neurons, target=target, quiet=True)
    same(r, cli("erase", "-m", model_path, "--prompt", prompt, "--target", target, "--neurons", nfile))
    r, _ = kn.edit_knowledge(prompt, target=new_target, neurons=neurons, quiet=True, old_target=target)
    theirs = cli("edit", "-m", model_path, "--prompt", prompt, "--target", target, "--new-target", new_target,
                 "--neurons", nfile, "--from-target")
    same(r, theirs)
    assert r["new_target"]["prob_after"] == theirs["new_target"]["prob_after"]


def test_undo_restores_the_weights_bit_for_bit(tiny_bert):
    kn = KnowledgeNeurons.from_pretrained(str(tiny_bert))
    neurons = [[1, 3], [2, 5], [2, 6]]
    before = {l: kn.model.ffn_out_weight_bits(l) for l in (1, 2)}
    r, undo = kn.edit_knowledge("the capital of france is [MASK] .", "london", neurons, undo_modification=False, quiet=True)
    assert undo.pending and kn.model.ffn_out_weight_bits(2) != before[2]
    undo()
    assert not undo.pending and {l: kn.model.ffn_out_weight_bits(l) for l in (1, 2)} == before
    undo()  # a second call does nothing
    r, undo = kn.erase_knowledge("the capital of france is [MASK] .", neurons, target="paris", quiet=True)
    assert {l: kn.model.ffn_out_weight_bits(l) for l in (1, 2)} == before, "undo_modification=True restores at once"


def test_a_pararel_fact_equals_kn_pararel_run(tiny_bert, tmp_path):
    """pararel_evaluate gives kn-pararel run's record for the same fact and unrelated fact."""
    import subprocess
    from pathlib import Path

    facts = {
        "a-cap": {"sentences": ["the capital of france is [MASK] .", "[MASK] is the capital of france .", "france ' s capital is [MASK] ."],
                  "relation_name": "P36", "obj_label": "paris", "sub_label": "france"},
        "b-lang": {"sentences": ["the official language of france is [MASK] .", "france speaks [MASK] ."],
                   "relation_name": "P37", "obj_label": "french", "sub_label": "france"},
    }
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(facts))
    kn_pararel = Path(kn_cli()).with_name("kn-pararel")
    run = tmp_path / "run"
    subprocess.run([str(kn_pararel), "run", "-m", str(tiny_bert), "--dataset", str(data), "--out", str(run), "-q",
                    "--steps", "10", "--batch-size", "10"], check=True, capture_output=True)
    records = {json.loads(l)["uuid"]: json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()}
    kn = KnowledgeNeurons.from_pretrained(str(tiny_bert))
    rec = records["a-cap"]
    ours = kn.pararel_evaluate(facts["a-cap"], facts[rec["unrelated_uuid"]], uuid="a-cap", unrelated_uuid=rec["unrelated_uuid"],
                               steps=10, batch_size=10)
    assert ours["record"] == rec
    # The same float32 values (the EAI entry prints them widened to float64).
    f32 = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    assert np.array_equal(f32(ours["eai"]["suppression"]["related"]["pct_change"]), f32(rec["suppression"]["related"]["pct_change"]))
    assert ours["eai"]["n_refined_neurons"] == len(rec["neurons"])
