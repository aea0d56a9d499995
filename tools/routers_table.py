#!/usr/bin/env python3
"""Prints the router comparison table of docs/routers.md from the runs of compare_routers.sh.

Usage: tools/routers_table.py RUNS_DIR

Reads each run's summary.json (final validation perplexity, parameters, throughput, and the
routing statistics of the final validation pass) and top1-disabled.json (`moelab eval
--disable-top-experts 1 --json`: the validation perplexity with each router's top expert removed).
"""
import json
import pathlib
import sys

ORDER = ["dense-baseline", "topk", "smoe-share", "topp", "hash", "maskmoe", "cartesian",
         "finedeep", "deepseek", "deepseek-rate-0.01", "expert_choice", "topk-sequence-balance",
         "topk-accum4", "topk-global-balance", "dsmoe-tau-0.3", "dsmoe-tau-0.5",
         "dsmoe-tau-0.7", "dsmoe-tau-0.9"]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def routing_columns(moe):
    """Experts per token (per routed sub-layer, averaged over layers), load imbalance of the
    routed banks, and method-specific notes."""
    if not moe:
        return "-", "-", ""
    layers = [moe[name] for name in sorted(moe, key=lambda n: int(n[len("layer"):]))]
    sublayers = len(layers[0]["routers"])
    per_token = " + ".join(
        f"{mean(layer['routers'][s]['experts_per_token'] for layer in layers):.2f}"
        for s in range(sublayers))
    routed = [bank for layer in layers for name, bank in layer["banks"].items()
              if not name.startswith("shared")]
    imbalance = f"{mean(bank['load_imbalance'] for bank in routed):.2f}"
    notes = []
    if all("active_experts_mean" in layer.get("stats", {}) for layer in layers):
        notes.append("active experts per layer: " + ", ".join(
            f"{layer['stats']['active_experts_mean']:.2f}" for layer in layers))
    if all("unrouted_tokens" in layer.get("stats", {}) for layer in layers):
        notes.append("tokens without an expert per layer: " + ", ".join(
            f"{layer['stats']['unrouted_tokens']:.3f}" for layer in layers))
    nsar = [bank["nsar"] for bank in routed if "nsar" in bank]
    if nsar:
        notes.append(f"NSAR {mean(nsar):.3f}")
    return per_token, imbalance, "; ".join(notes)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    names = [n for n in ORDER if (root / n / "summary.json").exists()]
    names += sorted(p.name for p in root.iterdir()
                    if (p / "summary.json").exists() and p.name not in ORDER)
    print("| run | steps | val ppl | val ppl, top-1 disabled | active / total params | tokens/s "
          "| experts per token | load imbalance | notes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in names:
        summary = json.loads((root / name / "summary.json").read_text())
        params = summary["parameters"]
        per_token, imbalance, notes = routing_columns(summary.get("validation_moe"))
        probe = root / name / "top1-disabled.json"
        disabled = f"{json.loads(probe.read_text())['ppl']:.3f}" if probe.exists() else "n/a"
        print(f"| {name} | {summary['steps']} | {summary['validation']['ppl']:.3f} | {disabled} "
              f"| {params['active'] / 1e6:.2f}M / {params['total'] / 1e6:.2f}M "
              f"| {summary['tokens_per_second']:.0f} | {per_token} | {imbalance} | {notes} |")


if __name__ == "__main__":
    main()
