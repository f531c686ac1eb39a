#!/usr/bin/env python3
"""The Python side of `scripts/bench-compare.sh`: times EleutherAI's knowledge-neurons library
(and a careful hand-written PyTorch IG) on the same checkpoint `kn-cli bench --model` uses.

Prints one JSON object on stdout; progress on stderr.

    python scripts/bench_python.py --bert DIR [--gpt2 DIR] [--threads 2]

DIR is a folder written by `kn-cli init-random --preset ... --tokenizer ...` (config.json,
model.safetensors and the tokenizer files). Needs torch, transformers and knowledge-neurons
(scripts/requirements-fixtures.txt).
"""

import argparse
import json
from pathlib import Path
import resource
import sys
import time

import torch
import torch.nn.functional as F

# The seed README's seven Paris prompts, shared with kn-cli bench and scripts/demo.sh.
PARIS = (Path(__file__).resolve().parent.parent / "data/prompts/paris.txt").read_text().splitlines()

# 5 and 20 GPT-2 tokens.
GPT2_PROMPTS = [
    "The capital of France is",
    "After a long journey over the mountains the tired travellers finally reached the capital of France, which is",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def careful_bert_ig(model, input_ids, mask_pos, target, steps, batch_size):
    """IG as a strong PyTorch user writes it: layers below l once, all alphas of a batch in one
    pass, the MLM head at the [MASK] row only, gradients w.r.t. the scaled activations only."""
    bert, layers = model.bert, model.bert.encoder.layer
    with torch.no_grad():
        h = bert.embeddings(input_ids=input_ids)
        atts, inters = [], []
        for layer in layers:
            att = layer.attention(h)[0]
            inter = layer.intermediate(att)
            h = layer.output(inter, att)
            atts.append(att)
            inters.append(inter)
    alphas = torch.arange(steps, dtype=torch.float32) / steps
    scores = []
    for l, layer in enumerate(layers):
        a = inters[l][0, mask_pos]
        grad = torch.zeros_like(a)
        for chunk in alphas.split(batch_size):
            k = len(chunk)
            x = (chunk[:, None] * a[None, :]).requires_grad_(True)
            inter = inters[l].repeat(k, 1, 1)
            inter = torch.cat([inter[:, :mask_pos], x[:, None], inter[:, mask_pos + 1 :]], dim=1)
            hb = layer.output(inter, atts[l].repeat(k, 1, 1))
            for upper in layers[l + 1 :]:
                hb = upper(hb)[0]
            probs = F.softmax(model.cls(hb[:, mask_pos]), dim=-1)[:, target]
            grad += torch.autograd.grad(probs.sum(), x)[0].sum(0)
        scores.append(a * grad / steps)
    return torch.stack(scores)


def bench_bert(path, steps, batch_size):
    from transformers import BertForMaskedLM, BertTokenizer
    from knowledge_neurons import KnowledgeNeurons

    model = BertForMaskedLM.from_pretrained(path).eval()
    tok = BertTokenizer.from_pretrained(path)
    kn = KnowledgeNeurons(model, tok, model_type="bert", device="cpu")
    prompt, target = PARIS[1], "paris"
    results = []

    log("bert: EAI get_scores, one prompt")
    secs, _ = timed(lambda: kn.get_scores(prompt, target, batch_size=batch_size, steps=steps, pbar=False))
    results.append({"case": "one prompt", "impl": "knowledge-neurons get_scores", "seconds": secs})

    log("bert: careful PyTorch IG, one prompt")
    enc = tok(prompt, return_tensors="pt")
    mask_pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])
    target_id = tok.convert_tokens_to_ids(target)
    secs, _ = timed(lambda: careful_bert_ig(model, enc["input_ids"], mask_pos, target_id, steps, batch_size))
    results.append({"case": "one prompt", "impl": "careful PyTorch", "seconds": secs})

    log("bert: EAI get_refined_neurons, seven Paris prompts")
    secs, _ = timed(
        lambda: kn.get_refined_neurons(
            PARIS, target, p=0.5, batch_size=batch_size, steps=steps, coarse_adaptive_threshold=0.3, quiet=True
        )
    )
    results.append({"case": "seven Paris prompts", "impl": "knowledge-neurons get_refined_neurons", "seconds": secs})
    return results


def bench_gpt2(path, steps, batch_size):
    from transformers import GPT2LMHeadModel, GPT2Tokenizer
    from knowledge_neurons import KnowledgeNeurons

    model = GPT2LMHeadModel.from_pretrained(path).eval()
    tok = GPT2Tokenizer.from_pretrained(path)
    kn = KnowledgeNeurons(model, tok, model_type="gpt2", device="cpu")
    results = []
    for prompt in GPT2_PROMPTS:
        n = len(tok.encode(prompt))
        log(f"gpt2: EAI get_scores, {n}-token prompt")
        secs, _ = timed(lambda: kn.get_scores(prompt, " Paris", batch_size=batch_size, steps=steps, pbar=False))
        results.append({"case": f"{n}-token prompt, 1-token target", "impl": "knowledge-neurons get_scores", "seconds": secs})
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bert", help="bert-base-uncased-shaped checkpoint folder")
    ap.add_argument("--gpt2", help="gpt2-shaped checkpoint folder (vocab.json + merges.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps, "results": []}
    if a.bert:
        out["results"] += bench_bert(a.bert, a.steps, a.batch_size)
    if a.gpt2:
        out["results"] += bench_gpt2(a.gpt2, a.steps, a.batch_size)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
