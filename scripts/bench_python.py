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


def ig_scores(acts, steps, batch_size, target_probs):
    """IG by the left Riemann sum (alphas k/steps, as the Python library) for each layer's
    activations `acts[l]` ([d_ff]): `target_probs(l, x)` is the target probability for each row
    of the scaled activations `x` ([k, d_ff]), differentiable in `x`."""
    alphas = torch.arange(steps, dtype=torch.float32, device=acts[0].device) / steps
    scores = []
    for l, a in enumerate(acts):
        grad = torch.zeros_like(a)
        for chunk in alphas.split(batch_size):
            x = (chunk[:, None] * a[None, :]).requires_grad_(True)
            grad += torch.autograd.grad(target_probs(l, x).sum(), x)[0].sum(0)
        scores.append(a * grad / steps)
    return torch.stack(scores)


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

    def target_probs(l, x):
        k = x.shape[0]
        inter = inters[l].repeat(k, 1, 1)
        inter = torch.cat([inter[:, :mask_pos], x[:, None], inter[:, mask_pos + 1 :]], dim=1)
        hb = layers[l].output(inter, atts[l].repeat(k, 1, 1))
        for upper in layers[l + 1 :]:
            hb = upper(hb)[0]
        return F.softmax(model.cls(hb[:, mask_pos]), dim=-1)[:, target]

    return ig_scores([i[0, mask_pos] for i in inters], steps, batch_size, target_probs)


def bench_bert(path, steps, batch_size, repeat=1):
    from transformers import BertForMaskedLM, BertTokenizer
    from knowledge_neurons import KnowledgeNeurons

    model = BertForMaskedLM.from_pretrained(path).eval()
    tok = BertTokenizer.from_pretrained(path)
    kn = KnowledgeNeurons(model, tok, model_type="bert", device="cpu")
    prompt, target = PARIS[1], "paris"
    results = []

    # The library's first call on the model is timed warm, after one untimed call, as every other
    # timing here (its later cases in this process, the seven prompts, run warm already).
    log("bert: EAI get_scores, one prompt (one untimed call first)")
    secs, _ = median_time(lambda: kn.get_scores(prompt, target, batch_size=batch_size, steps=steps, pbar=False), 1)
    results.append({"case": "one prompt", "impl": "knowledge-neurons get_scores", "seconds": secs})

    log("bert: careful PyTorch IG, one prompt")
    enc = tok(prompt, return_tensors="pt")
    mask_pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])
    target_id = tok.convert_tokens_to_ids(target)
    secs, runs = median_time(lambda: careful_bert_ig(model, enc["input_ids"], mask_pos, target_id, steps, batch_size), repeat)
    results.append({"case": "one prompt", "impl": "careful PyTorch", "seconds": secs, "runs_seconds": runs})

    log("bert: EAI get_refined_neurons, seven Paris prompts")
    secs, _ = timed(
        lambda: kn.get_refined_neurons(
            PARIS, target, p=0.5, batch_size=batch_size, steps=steps, coarse_adaptive_threshold=0.3, quiet=True
        )
    )
    results.append({"case": "seven Paris prompts", "impl": "knowledge-neurons get_refined_neurons", "seconds": secs})
    return results


def careful_gpt2_ig(model, input_ids, target, steps, batch_size):
    """Causal IG as a strong PyTorch user writes it for GPT-2: the prompt's keys and values of
    every layer computed once, then per layer l only the last position runs through layers >= l
    (its FFN output from the scaled activations, each upper block as one query row against the
    cached prefix keys/values plus its own), the head at that row; gradients w.r.t. the scaled
    activations only."""
    tr = model.transformer
    blocks = tr.h
    n_head = model.config.n_head
    d = model.config.n_embd
    dh = d // n_head
    s = input_ids.shape[1]
    with torch.no_grad():
        out = tr(input_ids, output_hidden_states=True)
        hidden = out.hidden_states  # hidden[j]: the input of block j, every position
        prefix_kv, mids, acts = [], [], []
        for j, blk in enumerate(blocks):
            h = hidden[j][0]
            _, k, v = blk.attn.c_attn(blk.ln_1(h)).split(d, dim=-1)
            prefix_kv.append((k[:-1].view(s - 1, n_head, dh).transpose(0, 1), v[:-1].view(s - 1, n_head, dh).transpose(0, 1)))
            att = blk.attn(blk.ln_1(h)[None])[0][0]
            mid = h + att
            mids.append(mid[-1])
            acts.append(blk.mlp.act(blk.mlp.c_fc(blk.ln_2(mid[-1]))))

    def upper_block(j, h):
        """Block j on one row per batch element (`h`: [k, d]) against the cached prefix."""
        blk = blocks[j]
        k_ = h.shape[0]
        q, k, v = blk.attn.c_attn(blk.ln_1(h)).split(d, dim=-1)
        q = q.view(k_, n_head, 1, dh)
        pk, pv = prefix_kv[j]
        kk = torch.cat([pk[None].expand(k_, -1, -1, -1), k.view(k_, n_head, 1, dh)], dim=2)
        vv = torch.cat([pv[None].expand(k_, -1, -1, -1), v.view(k_, n_head, 1, dh)], dim=2)
        w = torch.softmax(q @ kk.transpose(-1, -2) / dh**0.5, dim=-1)
        ctx = (w @ vv).reshape(k_, d)
        h = h + blk.attn.c_proj(ctx)
        return h + blk.mlp(blk.ln_2(h))

    def target_probs(l, x):
        h = mids[l][None] + blocks[l].mlp.c_proj(x)
        for j in range(l + 1, len(blocks)):
            h = upper_block(j, h)
        return F.softmax(model.lm_head(tr.ln_f(h)), dim=-1)[:, target]

    return ig_scores(acts, steps, batch_size, target_probs)


def plain_gpt2_ig(model, input_ids, target, steps, batch_size):
    """The same IG computed plainly (the whole model on the whole prompt for every batch, the
    activation at layer l's last position replaced through a hook), to check the careful one."""
    blocks = model.transformer.h
    acts = {}
    hooks = [b.mlp.act.register_forward_hook(lambda m, i, o, j=j: acts.__setitem__(j, o[0, -1].detach())) for j, b in enumerate(blocks)]
    with torch.no_grad():
        model(input_ids)
    for hk in hooks:
        hk.remove()
    def target_probs(l, x):
        def patch(m, i, o):
            o = o.expand(x.shape[0], -1, -1).clone()
            o[:, -1] = x
            return o

        hk = blocks[l].mlp.act.register_forward_hook(patch)
        logits = model(input_ids.expand(x.shape[0], -1)).logits[:, -1]
        hk.remove()
        return F.softmax(logits, dim=-1)[:, target]

    return ig_scores([acts[j] for j in range(len(blocks))], steps, batch_size, target_probs)


def median_time(fn, repeat):
    """The median of `repeat` timings of `fn`, after one untimed warm-up call (kn-cli bench's
    timings are medians too, and its first pass is not special), and the timings."""
    fn()
    runs = [timed(fn)[0] for _ in range(repeat)]
    return sorted(runs)[len(runs) // 2], runs


def bench_gpt2(path, steps, batch_size, repeat=1):
    from transformers import GPT2LMHeadModel, GPT2Tokenizer
    from knowledge_neurons import KnowledgeNeurons

    model = GPT2LMHeadModel.from_pretrained(path).eval()
    tok = GPT2Tokenizer.from_pretrained(path)
    kn = KnowledgeNeurons(model, tok, model_type="gpt2", device="cpu")
    results = []
    for prompt in GPT2_PROMPTS:
        n = len(tok.encode(prompt))
        # The first prompt's call is the first of the model (one untimed call first); the
        # longer prompt runs on the warmed model.
        log(f"gpt2: EAI get_scores, {n}-token prompt" + ("" if results else " (one untimed call first)"))
        run = lambda: kn.get_scores(prompt, " Paris", batch_size=batch_size, steps=steps, pbar=False)
        secs = timed(run)[0] if results else median_time(run, 1)[0]
        case = f"{n}-token prompt, 1-token target"
        results.append({"case": case, "impl": "knowledge-neurons get_scores", "seconds": secs})
        ids = torch.tensor([tok.encode(prompt)])
        target = tok.encode(" Paris")[0]
        log(f"gpt2: careful PyTorch causal IG, {n}-token prompt (checked against the plain computation)")
        careful = careful_gpt2_ig(model, ids, target, steps, batch_size)
        plain = plain_gpt2_ig(model, ids, target, steps, batch_size)
        rel = float((careful - plain).abs().max() / plain.abs().max())
        if rel > 1e-5:
            raise SystemExit(f"careful causal IG differs from the plain one: {rel:.2e} relative to the largest score")
        secs, runs = median_time(lambda: careful_gpt2_ig(model, ids, target, steps, batch_size), repeat)
        results.append({"case": case, "impl": "careful PyTorch", "seconds": secs, "runs_seconds": runs, "max_rel_error_vs_plain": rel})
    return results


def whole(kind, path, steps, batch_size):
    """One whole one-shot job, the way a script would do it (the shell times the process,
    interpreter start and imports included): `predict` loads bert and runs one forward at the
    [MASK]; `attribute` loads it and runs the careful IG of one prompt."""
    from transformers import BertForMaskedLM, BertTokenizer

    model = BertForMaskedLM.from_pretrained(path).eval()
    tok = BertTokenizer.from_pretrained(path)
    enc = tok(PARIS[1], return_tensors="pt")
    mask_pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0])
    if kind == "predict":
        with torch.no_grad():
            probs = F.softmax(model(**enc).logits[0, mask_pos], dim=-1)
        print(json.dumps({"top": tok.convert_ids_to_tokens(probs.topk(5).indices.tolist())}))
    else:
        scores = careful_bert_ig(model, enc["input_ids"], mask_pos, tok.convert_tokens_to_ids("paris"), steps, batch_size)
        print(json.dumps({"max_score": float(scores.max())}))


def kernel_rates(shapes, min_secs=0.3):
    """GFLOP/s of `[m, k] · [k, n]` in numpy (the OpenBLAS its wheel bundles) and torch (MKL /
    oneDNN on x86), with the right operand contiguous and as a transposed view, beside
    `kn-cli bench --kernels` (the gemm crate) on the same shapes."""
    import numpy as np

    def rate(f, flops):
        f()
        start, n = time.perf_counter(), 0
        while n == 0 or time.perf_counter() - start < min_secs:
            f()
            n += 1
        return flops * n / (time.perf_counter() - start) / 1e9

    out = []
    for m, k, n in shapes:
        a = np.random.rand(m, k).astype(np.float32)
        b = np.random.rand(k, n).astype(np.float32)
        bt = np.ascontiguousarray(b.T)
        ta, tb, tbt = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(bt)
        flops = 2 * m * k * n
        out.append({
            "m": m, "k": k, "n": n,
            "openblas": rate(lambda: a @ b, flops), "openblas_view": rate(lambda: a @ bt.T, flops),
            "torch": rate(lambda: ta @ tb, flops), "torch_view": rate(lambda: ta @ tbt.T, flops),
        })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", help="JSON list of [m, k, n] product shapes to time in numpy and torch")
    ap.add_argument("--whole", choices=["predict", "attribute"], help="run one whole job on --bert and exit")
    ap.add_argument("--bert", help="bert-base-uncased-shaped checkpoint folder")
    ap.add_argument("--gpt2", help="gpt2-shaped checkpoint folder (vocab.json + merges.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="timings of each careful-PyTorch case (median reported)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.whole:
        whole(a.whole, a.bert, a.steps, a.batch_size)
        return
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "steps": a.steps, "results": []}
    if a.bert:
        out["results"] += bench_bert(a.bert, a.steps, a.batch_size, a.repeat)
    if a.gpt2:
        out["results"] += bench_gpt2(a.gpt2, a.steps, a.batch_size, a.repeat)
    if a.kernels:
        out["kernels"] = kernel_rates(json.loads(a.kernels))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
