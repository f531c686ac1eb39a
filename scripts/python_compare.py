"""The seed README's Paris example, timed with EleutherAI's knowledge-neurons and with
knowledge_neurons_rs, from the same notebook-style script on the same checkpoint.

Usage: python scripts/python_compare.py MODEL_DIR [--repeat N]
(MODEL_DIR: a bert-base-uncased-shaped folder, e.g. the random one of scripts/demo.sh.)
Prints one JSON line per library: seconds to load, for get_refined_neurons over the 7 prompts,
and for the six interventions; torch runs with as many threads as there are cores.
"""

import argparse
import json
import os
import time

TEXTS = [
    "Sarah was visiting [MASK], the capital of france",
    "The capital of france is [MASK]",
    "[MASK] is the capital of france",
    "France's capital [MASK] is a hotspot for romantic vacations",
    "The eiffel tower is situated in [MASK]",
    "[MASK] is the most populous city in france",
    "[MASK], france's capital, is one of the most popular tourist destinations in the world",
]
TEXT, GROUND_TRUTH = TEXTS[0], "paris"


def example(kn, quiet_kw):
    """The README's calls after loading; returns (refine seconds, interventions seconds, neurons)."""
    t0 = time.perf_counter()
    refined = kn.get_refined_neurons(TEXTS, GROUND_TRUTH, p=0.5, batch_size=20, steps=20, coarse_adaptive_threshold=0.3, quiet=True)
    t1 = time.perf_counter()
    kn.suppress_knowledge(TEXT, GROUND_TRUTH, refined, **quiet_kw)
    kn.suppress_knowledge("[MASK] is the official language of the solomon islands", "english", refined, **quiet_kw)
    kn.enhance_knowledge(TEXT, GROUND_TRUTH, refined, **quiet_kw)
    kn.erase_knowledge(TEXT, refined, target=GROUND_TRUTH, erase_value="zero", **quiet_kw)
    kn.erase_knowledge(TEXT, refined, target=GROUND_TRUTH, erase_value="unk", **quiet_kw)
    kn.edit_knowledge(TEXT, target="london", neurons=refined, **quiet_kw)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, sorted(map(list, refined))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    cores = os.cpu_count() or 1

    import torch

    torch.set_num_threads(cores)
    from knowledge_neurons import KnowledgeNeurons as LibKN
    from transformers import BertForMaskedLM, BertTokenizer

    t0 = time.perf_counter()
    lib = LibKN(BertForMaskedLM.from_pretrained(a.model).eval(), BertTokenizer.from_pretrained(a.model), "bert", "cpu")
    load_lib = time.perf_counter() - t0

    from knowledge_neurons_rs import KnowledgeNeurons, initialize_model_and_tokenizer, model_type

    t0 = time.perf_counter()
    model, tokenizer = initialize_model_and_tokenizer(a.model)
    ours = KnowledgeNeurons(model, tokenizer, model_type=model_type(a.model))
    load_ours = time.perf_counter() - t0

    found = {}
    for name, kn, load in (("knowledge-neurons 0.0.2", lib, load_lib), ("knowledge_neurons_rs", ours, load_ours)):
        runs = [example(kn, {"quiet": True}) for _ in range(a.repeat)]
        refine = sorted(r[0] for r in runs)[len(runs) // 2]
        interventions = sorted(r[1] for r in runs)[len(runs) // 2]
        found[name] = runs[0][2]
        print(json.dumps({"library": name, "load_s": round(load, 3), "refined_neurons_s": round(refine, 3),
                          "interventions_s": round(interventions, 3), "neurons": len(runs[0][2]), "threads": cores}))
    a_, b_ = found.values()
    print(json.dumps({"same_refined_neurons": a_ == b_}))


if __name__ == "__main__":
    main()
