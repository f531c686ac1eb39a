#!/usr/bin/env python3
"""Prints the one table of `scripts/bench-compare.sh`: every case side by side, the ratios, and
whether each of issue #16's goals is met, from the JSON lines the script collected.

    python3 scripts/bench_table.py .cache/bench/compare.jsonl

Only the standard library: it runs with the machine's python3.
"""

import json
import statistics
import sys


def main(path):
    kn, whole, py = {}, {}, None
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        d = json.loads(line)
        if "whole" in d:
            whole[(d["whole"], d["side"])] = statistics.median(d["runs_seconds"])
        elif "torch" in d:
            py = d
        else:
            kn[d["model"]] = d
    models = list(kn.values())
    if not models:
        raise SystemExit(f"{path}: no kn-cli bench output")
    first = models[0]
    peak = first["fma_peak"]["gflop_per_second"]
    runs = first.get("fma_peak_runs_gflop_per_second", [])
    measured = f", the largest of {', '.join(f'{r:.0f}' for r in runs)}" if runs else ""
    print(f"CPU: {first['cpu']}, {first['threads']} threads, measured FMA peak {peak:.1f} GFLOP/s "
          f"({first['fma_peak']['isa']}{measured}); kn-cli {first['backend']}, steps {first['steps']}, batch {first['batch_size']}"
          + (f"; PyTorch {py['torch']} with {py['threads']} threads" if py else ""))
    print()

    def kn_case(model_part, case):
        for name, d in kn.items():
            if model_part in name:
                for r in d["results"]:
                    if r["case"] == case:
                        return r
        return None

    def py_case(case_part, impl):
        for r in (py or {}).get("results", []):
            if case_part(r["case"]) and r["impl"].startswith(impl):
                return r["seconds"]
        return None

    rows = []
    goals = []

    def row(label, lib, careful, ours, extra=""):
        ratio = lambda other: f"{other / ours:.2f}x" if other and ours else ""
        fmt = lambda v: f"{v:.2f} s" if v else ""
        rows.append((label, fmt(lib), fmt(careful), fmt(ours), ratio(lib), ratio(careful), extra))

    bert_one = kn_case("bert", "one prompt")
    bert_seven = kn_case("bert", "seven Paris prompts")
    gpt_five = kn_case("gpt2", "5-token prompt, 1-token target")
    gpt_long = kn_case("gpt2", "20-token prompt, 1-token target")
    is_long = lambda c: c.endswith("1-token target") and not c.startswith("5-token")
    is_five = lambda c: c.startswith("5-token")

    p_predict = whole.get(("predict, bert-base", "kn-cli"))
    t_predict = whole.get(("predict, bert-base", "transformers"))
    row("predict, bert-base, whole process", None, t_predict, p_predict, "careful column: transformers' script")
    goals.append(("predict bert-base whole process <= 0.5 s", p_predict is not None and p_predict <= 0.5, f"{p_predict:.2f} s" if p_predict else "n/a"))

    lib, careful = py_case(lambda c: c == "one prompt", "knowledge-neurons"), py_case(lambda c: c == "one prompt", "careful")
    if bert_one:
        row("bert-base one prompt, IG only", lib, careful, bert_one["seconds"],
            f"{bert_one['gflop_per_second']:.0f} GFLOP/s, {bert_one['percent_of_fma_peak']:.0f} % of peak")
        if careful:
            goals.append(("bert one prompt >= 1.5x careful PyTorch", careful / bert_one["seconds"] >= 1.5, f"{careful / bert_one['seconds']:.2f}x"))
        goals.append(("bert one prompt >= 70 % of the FMA peak", bert_one["percent_of_fma_peak"] >= 70, f"{bert_one['percent_of_fma_peak']:.0f} %"))

    a_kn, a_py = whole.get(("attribute one prompt, bert-base", "kn-cli")), whole.get(("attribute one prompt, bert-base", "careful PyTorch"))
    row("attribute one prompt, bert-base, whole process", None, a_py, a_kn)
    if a_kn and a_py:
        goals.append(("attribute whole process >= 2.5x the careful PyTorch script", a_py / a_kn >= 2.5, f"{a_py / a_kn:.2f}x"))

    lib7 = py_case(lambda c: c == "seven Paris prompts", "knowledge-neurons")
    if bert_seven:
        row("bert-base seven Paris prompts (refined neurons)", lib7, None, bert_seven["seconds"],
            f"{bert_seven['percent_of_fma_peak']:.0f} % of peak")
        if lib7:
            goals.append(("seven prompts >= 4x the Python library", lib7 / bert_seven["seconds"] >= 4, f"{lib7 / bert_seven['seconds']:.2f}x"))

    for label, case, pred in [("gpt2 5-token prompt, 1-token target", gpt_five, is_five), ("gpt2 20-token prompt, 1-token target (library: its long prompt)", gpt_long, is_long)]:
        if not case:
            continue
        lib, careful = py_case(pred, "knowledge-neurons"), py_case(pred, "careful")
        row(label, lib, careful, case["seconds"], f"{case['percent_of_fma_peak']:.0f} % of peak")
        if case is gpt_five and lib:
            goals.append(("gpt2 5-token >= 8x the Python library", lib / case["seconds"] >= 8, f"{lib / case['seconds']:.2f}x"))
        if case is gpt_five and careful:
            goals.append(("gpt2 5-token >= 1.5x the careful causal IG", careful / case["seconds"] >= 1.5, f"{careful / case['seconds']:.2f}x"))
    for name, d in kn.items():
        if "gguf" in name.lower():
            for r in d["results"]:
                if r["case"] != "load":
                    row(f"SmolLM2-135M {r['case']}", None, None, r["seconds"], f"{r['percent_of_fma_peak']:.0f} % of peak")
    for name, d in kn.items():
        for r in d["results"]:
            if r["case"] == "load":
                row(f"load {name.split('/')[-1]} (config, weights, tokenizer)", None, None, r["seconds"])

    head = ("case", "knowledge-neurons", "careful PyTorch", "kn-cli", "vs library", "vs careful", "")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| peak RSS | kn-cli | Python |")
    print("|---|---|---|")
    for name, d in kn.items():
        print(f"| {name} (bench, every case) | {d['peak_rss_mb']:.0f} MB | |")
    if py:
        print(f"| Python library + careful PyTorch (one process, every case) | | {py['peak_rss_mb']:.0f} MB |")
    for name, d in kn.items():
        limit = 1000 if "bert" in name else 1200 if "gpt2" in name else None
        if limit:
            goals.append((f"peak RSS {name.split('/')[-1]} <= {limit / 1000:.1f} GB", d["peak_rss_mb"] <= limit, f"{d['peak_rss_mb']:.0f} MB"))
    kernels = [k for d in kn.values() for k in d.get("kernels", [])]
    if kernels:
        print()
        other = {(k["m"], k["k"], k["n"]): k for k in (py or {}).get("kernels", [])}
        print("| weight product (bert-base shapes), GFLOP/s (% of FMA peak) | gemm crate (kn-cli) | OpenBLAS (numpy) | MKL (torch) |")
        print("|---|---|---|---|")
        pct = lambda g: f"{g:.0f} ({100 * g / peak:.0f} %)"
        for k in kernels:
            o = other.get((k["m"], k["k"], k["n"]))
            cells = [f"{pct(k['gflop_per_second'])}; view {k['strided_rhs_gflop_per_second']:.0f}"]
            cells += [f"{pct(o['openblas'])}; view {o['openblas_view']:.0f}", f"{pct(o['torch'])}; view {o['torch_view']:.0f}"] if o else ["", ""]
            print(f"| [{k['m']}×{k['k']}]·[{k['k']}×{k['n']}] {k['product']} | " + " | ".join(cells) + " |")
    print()
    print("| goal (issue #16) | measured | met |")
    print("|---|---|---|")
    for label, ok, value in goals:
        print(f"| {label} | {value} | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/bench/compare.jsonl")
