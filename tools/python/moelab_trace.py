"""Read a routing trace written by `moelab eval RUN --trace FILE` (the format: Note [Routing trace
format] in core/eval/routing_trace.h, docs/routers.md "Routing traces").

Needs only NumPy:

    import moelab_trace as mt
    trace = mt.load("trace.safetensors")
    trace.tokens                        # (N,) int32: the evaluated input token ids, in order
    d = trace.decision(layer=1)         # the layer's first router (router=0)
    d.experts, d.weights                # (N, slots): expert per slot (-1: empty), combine weight
    trace.load(layer=1)                 # (experts,) assignments per expert
    trace.experts_of(token_id=42, layer=1)  # how often each expert took that vocabulary id

From the shell, per layer and router: tokens per expert, the imbalance (max / mean) and the mean
number of experts per token:

    python3 tools/python/moelab_trace.py FILE [--json]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from moelab_checkpoint import CheckpointFormatError, read_safetensors  # noqa: E402

__all__ = ["Decision", "Trace", "TraceFormatError", "load"]

VERSION = 1


class TraceFormatError(ValueError):
    """A file that is not a routing trace this reader knows; the message names it."""


@dataclass
class Decision:
    experts: np.ndarray  # (N, slots) int16 or int32, -1 for an empty slot
    weights: np.ndarray  # (N, slots) float32
    token_scale: np.ndarray | None  # (N,) float32, for decisions that have one


@dataclass
class Trace:
    path: Path
    metadata: dict
    tokens: np.ndarray  # (N,) int32
    decisions: dict  # (layer, router) -> Decision

    @property
    def experts(self) -> int:
        return int(self.metadata["experts"])

    @property
    def layers(self) -> list[int]:
        return [int(entry["layer"]) for entry in self.metadata["layers"]]

    def decision(self, layer: int, router: int = 0) -> Decision:
        try:
            return self.decisions[(layer, router)]
        except KeyError:
            raise KeyError(f"{self.path}: no layer {layer} router {router}; layers {self.layers}")

    def load(self, layer: int, router: int = 0) -> np.ndarray:
        """Assignments per expert: (experts,) int64."""
        chosen = self.decision(layer, router).experts
        return np.bincount(chosen[chosen >= 0].astype(np.int64), minlength=self.experts)

    def experts_of(self, token_id: int, layer: int, router: int = 0) -> np.ndarray:
        """How often each expert took the tokens with this vocabulary id: (experts,) int64."""
        chosen = self.decision(layer, router).experts[self.tokens == token_id]
        return np.bincount(chosen[chosen >= 0].astype(np.int64), minlength=self.experts)


def load(path: str | Path) -> Trace:
    path = Path(path)
    try:
        tensors, metadata = read_safetensors(path)
    except CheckpointFormatError as error:
        raise TraceFormatError(str(error)) from None
    if "moelab.trace" not in metadata:
        raise TraceFormatError(f"{path}: not a routing trace (no 'moelab.trace' metadata)")
    try:
        meta = json.loads(metadata["moelab.trace"])
        version, count = int(meta["version"]), int(meta["tokens"])
        entries = [(int(e["layer"]), int(e["routers"])) for e in meta["layers"]]
        int(meta["experts"])
    except (ValueError, KeyError, TypeError) as error:
        raise TraceFormatError(f"{path}: 'moelab.trace' metadata: {error!r}") from None
    if version != VERSION:
        raise TraceFormatError(f"{path}: trace version {version}; this reader knows {VERSION}")
    tokens = tensors.get("tokens")
    if tokens is None or tokens.shape != (count,):
        raise TraceFormatError(f"{path}: expected 'tokens' of shape ({count},)")
    decisions = {}
    for layer, routers in entries:
        for router in range(routers):
            prefix = f"layer.{layer}.router.{router}."
            experts, weights = tensors.get(prefix + "experts"), tensors.get(prefix + "weights")
            if experts is None or weights is None:
                raise TraceFormatError(f"{path}: missing {prefix}experts or {prefix}weights")
            if experts.ndim != 2 or experts.shape[0] != count or weights.shape != experts.shape:
                raise TraceFormatError(
                    f"{path}: {prefix}experts {experts.shape} and weights {weights.shape} "
                    f"must both be ({count}, slots)"
                )
            decisions[(layer, router)] = Decision(experts, weights, tensors.get(prefix + "token_scale"))
    return Trace(path, meta, tokens, decisions)


def _summary(trace: Trace) -> dict:
    rows = []
    for (layer, router), d in sorted(trace.decisions.items()):
        load = trace.load(layer, router)
        mean = load.mean() if load.size else 0.0
        rows.append(
            {
                "layer": layer,
                "router": router,
                "tokens_per_expert": load.tolist(),
                "imbalance": float(load.max() / mean) if mean > 0 else None,
                "experts_per_token": float((d.experts >= 0).sum(axis=1).mean()) if len(d.experts) else 0.0,
            }
        )
    return {"file": str(trace.path), "tokens": int(trace.tokens.size), "experts": trace.experts,
            "recorded": {k: v for k, v in trace.metadata.items() if k not in ("layers", "version")},
            "routing": rows}


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Summarise a moelab routing trace.")
    parser.add_argument("file", help="a file written by moelab eval --trace")
    parser.add_argument("--json", action="store_true", help="the summary as JSON")
    args = parser.parse_args(argv)
    try:
        trace = load(args.file)
    except (TraceFormatError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    summary = _summary(trace)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{trace.path}: {summary['tokens']} tokens, {trace.experts} experts per layer")
    for row in summary["routing"]:
        imbalance = "n/a" if row["imbalance"] is None else f"{row['imbalance']:.3f}"
        print(
            f"  layer {row['layer']} router {row['router']}: imbalance {imbalance}, "
            f"{row['experts_per_token']:.3f} experts per token, "
            f"tokens per expert {row['tokens_per_expert']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
