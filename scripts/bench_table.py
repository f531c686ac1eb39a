#!/usr/bin/env python3
"""Prints the one table of `scripts/bench-compare.sh`: every case side by side, the ratios, and
whether each of issue #16's goals is met, from the JSON lines the script collected.

    python3 scripts/bench_table.py .cache/bench/compare.jsonl

Only the standard library: it runs with the machine's python3.
"""

import json
import statistics
import sys


def read(path):
    """The JSON objects of a bench-compare output, one per non-empty line."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(path):
    table(read(path), path)


def table(lines, source="input"):
    """Prints the tables of these JSON objects (`read`'s); `source` names them in errors."""
    # Every key's lines in the order they came: with ROUNDS > 1 each round appends one line per
    # kn-cli model, per whole-process case and side, and one Python line.
    kn, whole, pys = {}, {}, []
    for d in lines:
        if "whole" in d:
            whole.setdefault((d["whole"], d["side"]), []).append(statistics.median(d["runs_seconds"]))
        elif "torch" in d:
            pys.append(d)
        else:
            kn.setdefault(d["model"], []).append(d)
    if not kn:
        raise SystemExit(f"{source}: no kn-cli bench output")
    rounds = max(len(v) for v in kn.values())
    first = next(iter(kn.values()))[0]
    py = pys[0] if pys else None
    peaks = [p for v in kn.values() for d in v for p in d.get("fma_peak_runs_gflop_per_second", [d["fma_peak"]["gflop_per_second"]])]
    peak = max(peaks)
    print(f"CPU: {first['cpu']}, {first['threads']} threads, measured FMA peak {peak:.1f} GFLOP/s "
          f"({first['fma_peak']['isa']}, the largest of {len(peaks)} measurements, {min(peaks):.0f}-{peak:.0f}); "
          f"kn-cli {first['backend']}, steps {first['steps']}, batch {first['batch_size']}"
          + (f"; PyTorch {py['torch']} with {py['threads']} threads" if py else "")
          + (f"; {rounds} rounds, kn-cli and Python alternating (A B B A), each figure the median over them" if rounds > 1 else ""))
    print()

    def kn_case(model_part, case):
        """The case's figures over the rounds: median seconds, GFLOP/s and % of the peak (each
        round's own peak), and each round's seconds."""
        for name, runs in kn.items():
            if model_part in name:
                found = [r for d in runs for r in d["results"] if r["case"] == case]
                if found:
                    med = lambda key: statistics.median(r[key] for r in found if key in r)
                    out = dict(found[0], seconds=med("seconds"), rounds_seconds=[r["seconds"] for r in found],
                               rounds_percent=[r.get("percent_of_fma_peak") for r in found])
                    if "gflop_per_second" in found[0]:
                        out.update(gflop_per_second=med("gflop_per_second"), percent_of_fma_peak=med("percent_of_fma_peak"))
                    return out
        return None

    def py_cases(case_part, impl):
        return [r["seconds"] for d in pys for r in d.get("results", []) if case_part(r["case"]) and r["impl"].startswith(impl)]

    def py_case(case_part, impl):
        found = py_cases(case_part, impl)
        return statistics.median(found) if found else None

    def each_round(values, fmt):
        """Each round's value beside a goal's median, when there are several rounds."""
        return f" (rounds: {', '.join(fmt(x) for x in values)})" if len(values) > 1 else ""

    def per_round(theirs, ours):
        """Each round's ratio (the rounds paired in order), for the goals' column."""
        return each_round([t / o for t, o in zip(theirs, ours) if t and o], lambda x: f"{x:.2f}x")

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

    wmed = lambda key: statistics.median(whole[key]) if key in whole else None
    p_predict = wmed(("predict, bert-base", "kn-cli"))
    t_predict = wmed(("predict, bert-base", "transformers"))
    row("predict, bert-base, whole process", None, t_predict, p_predict, "careful column: transformers' script")
    goals.append(("predict bert-base whole process <= 0.5 s", p_predict is not None and p_predict <= 0.5, f"{p_predict:.2f} s" if p_predict else "n/a"))

    lib, careful = py_case(lambda c: c == "one prompt", "knowledge-neurons"), py_case(lambda c: c == "one prompt", "careful")
    if bert_one:
        row("bert-base one prompt, IG only", lib, careful, bert_one["seconds"],
            f"{bert_one['gflop_per_second']:.0f} GFLOP/s, {bert_one['percent_of_fma_peak']:.0f} % of peak")
        if careful:
            goals.append(("bert one prompt >= 1.5x careful PyTorch", careful / bert_one["seconds"] >= 1.5,
                          f"{careful / bert_one['seconds']:.2f}x" + per_round(py_cases(lambda c: c == "one prompt", "careful"), bert_one["rounds_seconds"])))
        pcts = [x for x in bert_one["rounds_percent"] if x is not None]
        goals.append(("bert one prompt >= 70 % of the FMA peak", bert_one["percent_of_fma_peak"] >= 70,
                      f"{bert_one['percent_of_fma_peak']:.0f} %" + each_round(pcts, lambda x: f"{x:.0f} %")))

    a_kn, a_py = wmed(("attribute one prompt, bert-base", "kn-cli")), wmed(("attribute one prompt, bert-base", "careful PyTorch"))
    row("attribute one prompt, bert-base, whole process", None, a_py, a_kn)
    if a_kn and a_py:
        goals.append(("attribute whole process >= 2.5x the careful PyTorch script", a_py / a_kn >= 2.5, f"{a_py / a_kn:.2f}x"))

    lib7 = py_case(lambda c: c == "seven Paris prompts", "knowledge-neurons")
    if bert_seven:
        row("bert-base seven Paris prompts (refined neurons)", lib7, None, bert_seven["seconds"],
            f"{bert_seven['percent_of_fma_peak']:.0f} % of peak")
        if lib7:
            goals.append(("seven prompts >= 4x the Python library", lib7 / bert_seven["seconds"] >= 4,
                          f"{lib7 / bert_seven['seconds']:.2f}x" + per_round(py_cases(lambda c: c == "seven Paris prompts", "knowledge-neurons"), bert_seven["rounds_seconds"])))

    for label, case, pred in [("gpt2 5-token prompt, 1-token target", gpt_five, is_five), ("gpt2 20-token prompt, 1-token target (library: its long prompt)", gpt_long, is_long)]:
        if not case:
            continue
        lib, careful = py_case(pred, "knowledge-neurons"), py_case(pred, "careful")
        row(label, lib, careful, case["seconds"], f"{case['percent_of_fma_peak']:.0f} % of peak")
        if case is gpt_five and lib:
            goals.append(("gpt2 5-token >= 8x the Python library", lib / case["seconds"] >= 8,
                          f"{lib / case['seconds']:.2f}x" + per_round(py_cases(pred, "knowledge-neurons"), case["rounds_seconds"])))
        if case is gpt_five and careful:
            goals.append(("gpt2 5-token >= 1.5x the careful causal IG", careful / case["seconds"] >= 1.5,
                          f"{careful / case['seconds']:.2f}x" + per_round(py_cases(pred, "careful"), case["rounds_seconds"])))
    for name, runs in kn.items():
        if "gguf" in name.lower():
            for r in runs[0]["results"]:
                if r["case"] != "load":
                    m = kn_case(name, r["case"])
                    row(f"SmolLM2-135M {r['case']}", None, None, m["seconds"], f"{m['percent_of_fma_peak']:.0f} % of peak")
    for name in kn:
        m = kn_case(name, "load")
        if m:
            row(f"load {name.split('/')[-1]} (config, weights, tokenizer)", None, None, m["seconds"])

    head = ("case", "knowledge-neurons", "careful PyTorch", "kn-cli", "vs library", "vs careful", "")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| peak RSS | kn-cli | Python |")
    print("|---|---|---|")
    rss = {name: max(d["peak_rss_mb"] for d in runs) for name, runs in kn.items()}
    for name, mb in rss.items():
        print(f"| {name} (bench, every case; the largest over the rounds) | {mb:.0f} MB | |")
    if pys:
        print(f"| Python library + careful PyTorch (one process, every case) | | {max(d['peak_rss_mb'] for d in pys):.0f} MB |")
    for name, mb in rss.items():
        limit = 1000 if "bert" in name else 1200 if "gpt2" in name else None
        if limit:
            goals.append((f"peak RSS {name.split('/')[-1]} <= {limit / 1000:.1f} GB", mb <= limit, f"{mb:.0f} MB"))
    # Each product shape once (bench-compare times them in its first round only).
    kernels = list({(k["m"], k["k"], k["n"]): k for runs in kn.values() for d in runs[::-1] for k in d.get("kernels", [])}.values())
    if kernels:
        print()
        other = {(k["m"], k["k"], k["n"]): k for d in pys for k in d.get("kernels", [])}
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
