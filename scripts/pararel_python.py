#!/usr/bin/env python3
"""PARAREL throughput of the Python side on any torch device: EleutherAI's knowledge-neurons
library as its `pararel_evaluate.py` drives it, and a careful PyTorch version of the same
evaluation, on a bert-base-shaped checkpoint and a fact set written by `kn-pararel data`.

Prints one JSON object on stdout (facts per second of each, the settings, the device); progress
on stderr. `scripts/gpu-check.sh` runs it beside `kn-pararel run` on the same facts.

    python scripts/pararel_python.py --model DIR --dataset FACTS.json --facts 50 --device cuda

Per fact, both do what `kn-pararel run` does with its EleutherAI defaults: refined neurons of
the fact's prompts (IG, 20 steps in batches of 20, coarse adaptive threshold 0.3, p = 0.3), then
suppression (activations 0) and enhancement (x 2) of those neurons at the [MASK] position,
measured on the fact's own prompts and on another fact's prompts. Multi-piece objects are
skipped, as `kn-pararel run` skips them by default.

The careful version is what a strong PyTorch user writes: each prompt's layers below l once, all
quadrature points of a layer in one pass, the head at the [MASK] row only, gradients of the
scaled activations only; the interventions of a fact's prompts in one padded batch each.
"""

import argparse
import json
import random
import sys
import time

import torch
import torch.nn.functional as F

from bench_python import careful_bert_ig


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def facts_of(path, n, tok, seed):
    """The first `n` facts (in a seeded order) whose object is one wordpiece, each with an
    unrelated fact of another relation (as kn-pararel, and the paper)."""
    data = json.load(open(path))
    ids = sorted(data)
    random.Random(seed).shuffle(ids)
    usable = [u for u in ids if len(tok.tokenize(data[u]["obj_label"])) == 1 and data[u]["sentences"]]
    out = []
    for u in usable[:n]:
        rel = data[u]["relation_name"]
        other = next(v for v in usable if data[v]["relation_name"] != rel)
        out.append((data[u], data[other]))
    return out


def library_fact(kn, fact, unrelated, steps, batch_size):
    """One fact as EleutherAI's pararel_evaluate.py evaluates it."""
    obj = fact["obj_label"]
    neurons = kn.get_refined_neurons(
        fact["sentences"], obj, p=0.3, batch_size=batch_size, steps=steps, coarse_adaptive_threshold=0.3, quiet=True
    )
    for prompts, target in ((fact["sentences"], obj), (unrelated["sentences"], unrelated["obj_label"])):
        for prompt in prompts:
            kn.suppress_knowledge(prompt, target, neurons, undo_modification=True, quiet=True)
            kn.enhance_knowledge(prompt, target, neurons, undo_modification=True, quiet=True)
    return len(neurons)


class Careful:
    """The same evaluation written directly against transformers' BERT modules."""

    def __init__(self, model, tok, device, steps, batch_size):
        self.model, self.tok, self.device = model, tok, device
        self.steps, self.batch_size = steps, batch_size
        self.layers = model.bert.encoder.layer
        self.mask_id = tok.mask_token_id

    def scores(self, prompt, target):
        """IG of every layer's FFN neurons at the [MASK] row, [n_layers, d_ff]: bench_python's
        careful IG, on the model's device."""
        ids = self.tok(prompt, return_tensors="pt")["input_ids"].to(self.device)
        pos = int((ids[0] == self.mask_id).nonzero()[0])
        return careful_bert_ig(self.model, ids, pos, target, self.steps, self.batch_size)

    def refined(self, prompts, target):
        counts = None
        for prompt in prompts:
            s = self.scores(prompt, target)
            coarse = s > 0.3 * s.max()
            counts = coarse.int() if counts is None else counts + coarse.int()
        return (counts > 0.3 * len(prompts)).nonzero().tolist()

    def measure(self, prompts, target, neurons, factor):
        """Target probabilities at [MASK] of all `prompts` in one padded batch, with the
        `neurons`' activations at the [MASK] row multiplied by `factor` (None: unpatched)."""
        enc = self.tok(prompts, return_tensors="pt", padding=True).to(self.device)
        pos = (enc["input_ids"] == self.mask_id).int().argmax(1)
        rows = torch.arange(len(prompts), device=self.device)
        hooks = []
        if factor is not None:
            by_layer = {}
            for l, i in neurons:
                by_layer.setdefault(l, []).append(i)
            for l, idx in by_layer.items():
                idx_t = torch.tensor(idx, device=self.device)

                def patch(module, inputs, output, idx_t=idx_t):
                    output = output.clone()
                    output[rows[:, None], pos[:, None], idx_t[None, :]] *= factor
                    return output

                hooks.append(self.layers[l].intermediate.register_forward_hook(patch))
        with torch.no_grad():
            logits = self.model(**enc).logits[rows, pos]
        for h in hooks:
            h.remove()
        return F.softmax(logits, dim=-1)[:, target]

    def fact(self, fact, unrelated):
        target = self.tok.convert_tokens_to_ids(self.tok.tokenize(fact["obj_label"]))[0]
        neurons = self.refined(fact["sentences"], target)
        for prompts, obj in ((fact["sentences"], fact["obj_label"]), (unrelated["sentences"], unrelated["obj_label"])):
            t = self.tok.convert_tokens_to_ids(self.tok.tokenize(obj))[0]
            self.measure(prompts, t, neurons, None)
            self.measure(prompts, t, neurons, 0.0)
            self.measure(prompts, t, neurons, 2.0)
        return len(neurons)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(name, facts, one, device, budget_s):
    """Facts per second of `one(fact, unrelated)` over `facts` (after one warm-up fact), stopping
    early once `budget_s` seconds are spent."""
    one(*facts[0])
    sync(device)
    start, done, neurons = time.perf_counter(), 0, 0
    for fact, unrelated in facts[1:]:
        neurons += one(fact, unrelated)
        done += 1
        if time.perf_counter() - start > budget_s:
            break
    sync(device)
    secs = time.perf_counter() - start
    log(f"{name}: {done} facts in {secs:.1f} s ({done / secs:.3f} facts/s)")
    return {"impl": name, "facts": done, "seconds": secs, "facts_per_second": done / secs, "mean_neurons": neurons / max(done, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="bert-base-shaped checkpoint folder (kn-cli init-random)")
    ap.add_argument("--dataset", required=True, help="fact set written by kn-pararel data (EleutherAI format)")
    ap.add_argument("--facts", type=int, default=50, help="facts timed per implementation (after one warm-up)")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per implementation at most")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--impl", default="library,careful", help="comma-separated: library, careful")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from transformers import BertForMaskedLM, BertTokenizer

    model = BertForMaskedLM.from_pretrained(a.model).eval().to(a.device)
    tok = BertTokenizer.from_pretrained(a.model)
    facts = facts_of(a.dataset, a.facts + 1, tok, a.seed)
    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        "batch_size": a.batch_size,
        "results": [],
    }
    impls = a.impl.split(",")
    if "careful" in impls:
        careful = Careful(model, tok, a.device, a.steps, a.batch_size)
        out["results"].append(run("careful PyTorch", facts, careful.fact, a.device, a.budget))
    if "library" in impls:
        from knowledge_neurons import KnowledgeNeurons

        kn = KnowledgeNeurons(model, tok, model_type="bert", device=a.device)
        lib = lambda f, u: library_fact(kn, f, u, a.steps, a.batch_size)  # noqa: E731
        out["results"].append(run("knowledge-neurons", facts, lib, a.device, a.budget))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
