"""Read moelab runs and checkpoints into NumPy arrays (the format: docs/checkpoints.md).

Needs only NumPy (and Python 3.11 for the recipe, read with tomllib); PyTorch is optional:

    import moelab_checkpoint as mc
    ckpt = mc.load("runs/quickstart-20261202-101500")   # run, checkpoints/ or step-N directory
    ckpt.step, ckpt.model["d_model"], ckpt.recipe["router"]["k"]
    w_in = ckpt.tensors["layer0.moe.block.experts.w_in"]  # (experts, d_model, 2 d_ff), float32
    gate, up = ckpt.swiglu("layer0.moe.block.experts")      # each (experts, d_model, d_ff)
    state_dict = ckpt.to_torch()                            # torch.Tensor values (needs torch)

From the shell, a table of the tensors:

    python3 tools/python/moelab_checkpoint.py RUN_OR_CHECKPOINT [--json]

Expert-parallel runs store each stacked expert tensor per expert in several files with an index
(Note [Expert shards] in core/checkpoint/checkpoint.h); the loader puts the stacks back together,
so a checkpoint reads the same whoever wrote it. BF16 tensors come back as float32 (NumPy has no
bfloat16); every other dtype as its NumPy equivalent.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - older Pythons read no recipe
    tomllib = None

__all__ = ["Checkpoint", "CheckpointFormatError", "load", "read_safetensors", "resolve_checkpoint"]

FORMAT = "moelab-checkpoint-1"


class CheckpointFormatError(ValueError):
    """A file or directory that is not what a moelab checkpoint holds; the message names it."""


_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of one .safetensors file. The arrays are read-only views of the file,
    memory-mapped (BF16 ones are widened copies), so a large checkpoint is read as it is used."""
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size > 0 else np.zeros(0, np.uint8)
    if data.size < 8:
        raise CheckpointFormatError(f"{path}: {data.size} bytes, too short for a safetensors file")
    header_size = int(data[:8].view("<u8")[0])
    if header_size > data.size - 8:
        raise CheckpointFormatError(f"{path}: header of {header_size} bytes exceeds the file")
    try:
        header = json.loads(bytes(data[8 : 8 + header_size]))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        entries = {
            name: (e["dtype"], tuple(int(n) for n in e["shape"]), [int(o) for o in e["data_offsets"]])
            for name, e in header.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointFormatError(f"{path}: header is not a safetensors header: {error!r}") from None
    body = data[8 + header_size :]
    tensors = {}
    for name, (dtype, shape, (begin, end)) in entries.items():
        if not 0 <= begin <= end <= body.size:
            raise CheckpointFormatError(f"{path}: '{name}' lies outside the data")
        if dtype != "BF16" and dtype not in _DTYPES:
            raise CheckpointFormatError(f"{path}: '{name}' has dtype {dtype}, unknown here")
        itemsize = 2 if dtype == "BF16" else _DTYPES[dtype].itemsize
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * itemsize:
            raise CheckpointFormatError(
                f"{path}: '{name}' has {end - begin} bytes, its shape {shape} and dtype {dtype} "
                f"need {count * itemsize}"
            )
        raw = body[begin:end]
        if dtype == "BF16":
            # The upper half of a float32: widen by shifting the 16 bits into place.
            array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            array = raw.view(_DTYPES[dtype])
        tensors[name] = array.reshape(shape)
    return tensors, metadata


def _is_complete(step_dir: Path) -> bool:
    has_model = (step_dir / "model.safetensors").is_file() or (
        step_dir / "model.safetensors.index.json"
    ).is_file()
    return has_model and (step_dir / "state.json").is_file()


def resolve_checkpoint(path: str | Path) -> Path:
    """The step directory meant by `path`: a step-N directory itself, or the newest complete
    step-N of a checkpoints/ directory or of a run directory (as moelab eval resolves it)."""
    path = Path(path)
    if _is_complete(path):
        return path
    for directory in (path, path / "checkpoints"):
        steps = []
        if directory.is_dir():
            for child in directory.iterdir():
                match = re.fullmatch(r"step-(\d+)", child.name)
                if match and _is_complete(child):
                    steps.append((int(match.group(1)), child))
        if steps:
            return max(steps)[1]
    raise CheckpointFormatError(f"no complete checkpoint at {path} (expected a run directory, "
                                "its checkpoints/ or a step-N directory)")


def _read_kind(step_dir: Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    whole = step_dir / f"{kind}.safetensors"
    index_path = step_dir / f"{kind}.safetensors.index.json"
    if whole.is_file() or not index_path.is_file():
        return read_safetensors(whole)
    index = json.loads(index_path.read_text())
    tensors: dict[str, np.ndarray] = {}
    for file in sorted(set(index["weight_map"].values())):
        held, _ = read_safetensors(step_dir / file)
        tensors.update({n: held[n] for n, f in index["weight_map"].items() if f == file})
    for name, experts in index.get("moelab_expert_stacks", {}).items():
        parts = [f"{name}.{e}" for e in range(experts)]
        missing = [p for p in parts if p not in tensors]
        if missing:
            raise CheckpointFormatError(f"{index_path}: '{missing[0]}' is in none of its files")
        tensors[name] = np.stack([tensors.pop(p) for p in parts])
    return tensors, index.get("metadata", {})


@dataclass
class Checkpoint:
    directory: Path  # the step-N directory
    run_directory: Path | None  # holds recipe.resolved.toml and tokenizer.txt, when found
    step: int
    tensors: dict[str, np.ndarray]  # parameters and buffers, by module path
    metadata: dict[str, str]  # of the weights' file (or index)
    state: dict  # state.json: data position, optimizer steps, recipe hash, ...
    recipe: dict | None = None  # recipe.resolved.toml, every default filled in
    model: dict = field(default_factory=dict)  # shape: d_model, layers, heads, experts, ...

    @property
    def tied_head(self) -> bool:
        """Whether the output head is the embedding (logits = final_norm(h) @ embedding.T)."""
        if "moelab.output_head" in self.metadata:
            return self.metadata["moelab.output_head"] == "embedding"
        return "head" not in self.tensors

    def output_head(self) -> np.ndarray:
        """(vocab, d_model): the matrix the logits are computed with."""
        return self.tensors["embedding" if self.tied_head else "head"]

    def swiglu(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        """The gate and up projections fused in `prefix`.w_in ([gate | up] on the last axis), each
        (..., d_model, d_ff) in (in, out) orientation: h = silu(x @ gate) * (x @ up)."""
        w_in = self.tensors[f"{prefix}.w_in"]
        d_ff = w_in.shape[-1] // 2
        return w_in[..., :d_ff], w_in[..., d_ff:]

    def optimizer(self) -> dict[str, np.ndarray]:
        """AdamW moments and step counts, and the random generators' states."""
        return _read_kind(self.directory, "optimizer")[0]

    def to_torch(self) -> dict:
        """The tensors as torch.Tensor (needs PyTorch)."""
        import torch

        return {name: torch.from_numpy(np.array(a)) for name, a in self.tensors.items()}


def _model_shape(metadata: dict[str, str], recipe: dict | None, tensors) -> dict:
    if "moelab.model" in metadata:
        return json.loads(metadata["moelab.model"])
    if recipe is None:  # a checkpoint written before the metadata, without its run
        return {"vocab_size": tensors["embedding"].shape[0], "d_model": tensors["embedding"].shape[1]}
    m = recipe["model"]
    moe = m.get("ffn") == "moe"
    return {
        "vocab_size": tensors["embedding"].shape[0],
        "d_model": m["d_model"],
        "layers": m["layers"],
        "heads": m["heads"],
        "kv_heads": m["kv_heads"] or m["heads"],
        "head_dim": m["d_model"] // m["heads"],
        "d_ff": m["d_ff"],
        "norm_eps": m["norm_eps"],
        "experts": recipe["moe"]["experts"] if moe else 0,
        "d_ff_expert": recipe["moe"]["d_ff_expert"] if moe else 0,
    }


def load(path: str | Path) -> Checkpoint:
    """A run directory, its checkpoints/ directory or a step-N directory, read into NumPy."""
    step_dir = resolve_checkpoint(path)
    tensors, metadata = _read_kind(step_dir, "model")
    if metadata.get("format", FORMAT) != FORMAT:
        raise CheckpointFormatError(
            f"{step_dir}: format '{metadata['format']}', this loader reads {FORMAT}"
        )
    state = json.loads((step_dir / "state.json").read_text())
    run_dir = step_dir.parent.parent
    recipe = None
    if (run_dir / "recipe.resolved.toml").is_file() and tomllib is not None:
        recipe = tomllib.loads((run_dir / "recipe.resolved.toml").read_text())
    else:
        run_dir = run_dir if (run_dir / "recipe.resolved.toml").is_file() else None
    return Checkpoint(
        directory=step_dir,
        run_directory=run_dir,
        step=int(state["step"]),
        tensors=tensors,
        metadata=metadata,
        state=state,
        recipe=recipe,
        model=_model_shape(metadata, recipe, tensors),
    )


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="List the tensors of a moelab checkpoint.")
    parser.add_argument("path", help="run directory, checkpoints/ or step-N directory")
    parser.add_argument(
        "--json", action="store_true", help="name, shape, dtype, sum and first values as JSON"
    )
    args = parser.parse_args(argv)
    try:
        ckpt = load(args.path)
    except (CheckpointFormatError, OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rows = [
        {
            "name": n,
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "sum": float(a.sum(dtype=np.float64)),
            "first": [float(v) for v in a.reshape(-1)[:4]],
        }
        for n, a in ckpt.tensors.items()
    ]
    if args.json:
        print(json.dumps({"step": ckpt.step, "model": ckpt.model, "tensors": rows}))
        return 0
    print(f"{ckpt.directory} (step {ckpt.step})")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"  {r['name']:<{width}}  {r['dtype']:<8} {tuple(r['shape'])}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
