"""EleutherAI's knowledge-neurons on the same checkpoint (the tiny BERT fixture): the same
scores within 1e-5 of the largest and the same refined neurons (BERT is the path of the
Python library without a known bug)."""

import numpy as np
import pytest

from knowledge_neurons_rs import KnowledgeNeurons

PROMPTS = ["the capital of france is [MASK] .", "[MASK] is the capital of france .", "france ' s capital is [MASK] ."]


def test_scores_and_refined_neurons_match_the_python_library(tiny_bert):
    torch = pytest.importorskip("torch")
    kn_lib = pytest.importorskip("knowledge_neurons")
    from transformers import BertForMaskedLM, BertTokenizer

    torch.set_num_threads(2)
    lib = kn_lib.KnowledgeNeurons(
        BertForMaskedLM.from_pretrained(str(tiny_bert)).eval(), BertTokenizer.from_pretrained(str(tiny_bert)), "bert", "cpu"
    )
    ours = KnowledgeNeurons.from_pretrained(str(tiny_bert))
    worst = 0.0
    for p in PROMPTS:
        theirs = lib.get_scores(p, "paris", batch_size=10, steps=20, pbar=False).detach().numpy()
        mine = ours.get_scores(p, "paris", batch_size=10, steps=20)
        worst = max(worst, float(np.abs(mine - theirs).max() / np.abs(theirs).max()))
    print(f"scores vs the Python library: {worst:.2e} of the largest (bound 1e-5)")
    assert worst < 1e-5
    a = lib.get_refined_neurons(PROMPTS, "paris", p=0.5, batch_size=10, steps=20, coarse_adaptive_threshold=0.3, quiet=True)
    b = ours.get_refined_neurons(PROMPTS, "paris", p=0.5, batch_size=10, steps=20, coarse_adaptive_threshold=0.3, quiet=True)
    assert sorted(map(list, a)) == sorted(b)
