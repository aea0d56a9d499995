#!/usr/bin/env python3
"""Writes the seed corpora of the fuzzers under tests/fuzz/seeds/<target>/ (standard library only).

Seeds are small valid (and a few almost valid) inputs that let the fuzzers start deep inside each
format instead of rediscovering it byte by byte. Rerun this after a format changes (the recipe
schema, safetensors, state.json, the BPE tokenizer file) and commit the result:

    python3 tests/fuzz/make_seeds.py

Recipe seeds are taken from recipes/ and tests/recipes/ and rewritten into the recipe fuzzer's
input format (tests/fuzz/recipe_fuzzer.cpp): `extends` names base.toml, the second file after the
"#--base--" line, and no '/' remains (the fuzzer rejects inputs that could name paths elsewhere).
"""

import json
import re
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "fuzz" / "seeds"

BASE_MARKER = "\n#--base--\n"
SET_MARKER = "\n#--set--\n"


def write(target, name, data):
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    (directory / name).write_bytes(data)


# ---- recipes -------------------------------------------------------------------------------------

def confined(text, is_base):
    """`text` with extends pointing at base.toml (dropped in the base: there are only two files)
    and without '/': comments that mention paths go, values keep their shape."""
    lines = []
    for line in text.splitlines():
        if re.match(r"\s*extends\s*=", line):
            if not is_base:
                lines.append('extends = "base.toml"')
            continue
        if "/" in line and line.lstrip().startswith("#"):
            continue
        if "/" in line and " #" in line:
            line = line[: line.index(" #")].rstrip()
        lines.append(line.replace("/", "-"))
    return "\n".join(lines).strip("\n") + "\n"


def recipe_seed(name, recipe, base=None, overrides=()):
    text = confined((ROOT / recipe).read_text(), is_base=False)
    if base is not None:
        text = text.rstrip("\n") + BASE_MARKER + confined((ROOT / base).read_text(), is_base=True)
    if overrides:
        text = text.rstrip("\n") + SET_MARKER + "\n".join(overrides) + "\n"
    assert "/" not in text.split(SET_MARKER)[0], name
    write("recipe", name, text)


def recipe_seeds():
    bad = "tests/recipes/bad/"
    recipe_seed("tiny", "tests/recipes/tiny.toml")
    recipe_seed("tiny-set", "tests/recipes/tiny.toml",
                overrides=["train.steps=5", "router.k=1", "moe.capacity_factor=1.25",
                           "tokenizer.plugin=bpe", "model.dtype=bfloat16"])
    recipe_seed("quickstart", "recipes/quickstart.toml", "recipes/base/brown-small.toml")
    recipe_seed("dense-baseline", "recipes/dense-baseline.toml", "recipes/base/brown-small.toml")
    for router in ["dsmoe", "topp", "maskmoe", "cartesian"]:
        recipe_seed(f"router-{router}", f"recipes/routers/{router}.toml", "tests/recipes/base.toml")
    recipe_seed("tokenizer-lbpe", "recipes/tokenizers/lbpe.toml", "tests/recipes/base.toml")
    # [[stage]] tables with their own seq_len, batch_size and [stage.attention] options.
    recipe_seed("stages-abf", "recipes/attention/harpe/extend-abf-multi.toml",
                "tests/recipes/base.toml")
    for case in ["several_errors_at_once", "syntax_error", "section_not_a_table", "misspelled_key",
                 "partition_without_source"]:
        recipe_seed(f"bad-{case}", bad + f"{case}.toml", "tests/recipes/base.toml")
    recipe_seed("bad-extends-missing", bad + "extends_missing_file.toml")
    # a extends b, b extends a: recipe.toml and base.toml extend each other.
    write("recipe", "bad-extends-cycle",
          'extends = "base.toml"\nseed = 1' + BASE_MARKER + 'extends = "recipe.toml"\n')


# ---- safetensors ---------------------------------------------------------------------------------

DTYPES = {"F64": "d", "F32": "f", "F16": "e", "BF16": "H", "I64": "q", "I32": "i", "I16": "h",
          "I8": "b", "U8": "B", "BOOL": "?"}


def safetensors(tensors, metadata=None, pad=True, order=None):
    """tensors: [(name, dtype, shape, values)] in buffer order. As write_safetensors() writes it:
    compact JSON with sorted keys, padded with spaces to a multiple of 8."""
    header = {}
    buffer = b""
    for name, dtype, shape, values in tensors:
        data = struct.pack("<" + DTYPES[dtype] * len(values), *values)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(buffer), len(buffer) + len(data)]}
        buffer += data
    if metadata is not None:
        header["__metadata__"] = metadata
    keys = order if order is not None else sorted(header)
    text = json.dumps({k: header[k] for k in keys}, separators=(",", ":"))
    if pad:
        text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + buffer


def safetensors_seeds():
    write("safetensors", "empty", safetensors([]))
    write("safetensors", "one-f32",
          safetensors([("w", "F32", [2, 3], [0.5, -1, 2, 3.25, 0, 1e-3])], {"format": "pt"}))
    write("safetensors", "mixed-dtypes", safetensors([
        ("layers.0.attn.wq", "BF16", [2, 2], [0x3F80, 0x4000, 0xBF80, 0]),
        ("step", "I64", [], [12]),
        ("mask", "BOOL", [3], [True, False, True]),
        ("empty", "U8", [0, 4], []),
        ("ids", "I32", [2], [7, -1]),
        ("bias", "F64", [1], [0.25]),
        ("half", "F16", [2], [1.0, -2.0]),
        ("small", "I8", [2], [-3, 4]),
        ("short", "I16", [1], [300]),
    ], {"moelab": "0.1.0", "step": "12"}))
    # Buffer order differs from the key order; unpadded header.
    write("safetensors", "unsorted-unpadded",
          safetensors([("z", "F32", [1], [1.0]), ("a", "U8", [4], [1, 2, 3, 4])], pad=False,
                      order=["z", "a"]))
    # Almost valid: one byte of the buffer owned by no tensor.
    valid = safetensors([("w", "F32", [1], [1.0])])
    write("safetensors", "bad-trailing-byte", valid + b"\0")


# ---- state.json ----------------------------------------------------------------------------------

def state(**fields):
    text = {"format": "moelab-checkpoint-1", "step": 300, "optimizer_steps": 300,
            "tokens_seen": 614400, "data": {"epoch": 0, "cursor": 4800},
            "recipe_hash": "9f2c4e1a7b3d5f60", "elapsed_seconds": 187.25}
    text.update(fields)
    return text


def checkpoint_state_seeds():
    records = [{"section": "tokenizer", "component": "bytes", "plugin": "bytes", "version": "1.0.0",
                "file": "lib/moelab/plugins/moelab-plugin-bytes.so", "sdk_version": "3.1.0",
                "fingerprint": "gcc-12 libstdc++ cxx11abi torch-2.1 cpu"},
               {"section": "router", "component": "topk", "plugin": "topk", "version": "1.2.0",
                "file": "lib/moelab/plugins/moelab-plugin-topk.so", "sdk_version": "3.1.0",
                "fingerprint": "gcc-12 libstdc++ cxx11abi torch-2.1 cpu"}]
    # As save_checkpoint() writes it: dump(2), sorted keys.
    full = state(moelab_version="0.1.0", plugins=records)
    write("checkpoint_state", "trainer.json", json.dumps(full, indent=2, sort_keys=True) + "\n")
    minimal = state()
    del minimal["elapsed_seconds"]
    write("checkpoint_state", "minimal.json", json.dumps(minimal, separators=(",", ":")))
    write("checkpoint_state", "limits.json", json.dumps(state(
        step=9223372036854775807, tokens_seen=0, elapsed_seconds=1.7976931348623157e308,
        recipe_hash="\u00e9\u4e2d\n\"", extra={"nested": [[1, 2.5, None, True], {"k": "v"}]}),
        separators=(",", ":"), ensure_ascii=True))
    write("checkpoint_state", "bad-negative-step.json",
          json.dumps(state(step=-1), separators=(",", ":")))


def checkpoint_index_seeds():
    # As save_checkpoint() writes it for two expert-parallel processes (Note [Expert shards]).
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {"embedding": files[0], "final_norm.weight": files[0]}
    for e in range(4):
        weight_map["layer0.ffn.block.experts.w_in.%d" % e] = files[e // 2]
    index = {"metadata": {"format": "moelab-checkpoint-1", "step": "12"},
             "weight_map": weight_map,
             "moelab_expert_stacks": {"layer0.ffn.block.experts.w_in": 4}}
    write("checkpoint_index", "two-shards.json", json.dumps(index, indent=2) + "\n")
    write("checkpoint_index", "huggingface.json", json.dumps(
        {"metadata": {"total_size": 1024}, "weight_map": {"lm_head.weight": "model-00001-of-00001.safetensors"}}))
    write("checkpoint_index", "bad-path.json", json.dumps({"weight_map": {"w": "../x.safetensors"}}))
    write("checkpoint_index", "bad-count.json", json.dumps(
        {"weight_map": {}, "moelab_expert_stacks": {"w": 0}}))


# ---- BPE tokenizer files -------------------------------------------------------------------------

def byte_level_alphabet():
    """byte -> character of GPT-2's byte-level alphabet (bpe_family/byte_level.h)."""
    def itself(b):
        return 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
    alphabet, next_code = [], 256
    for b in range(256):
        if itself(b):
            alphabet.append(chr(b))
        else:
            alphabet.append(chr(next_code))
            next_code += 1
    return alphabet


ALPHABET = byte_level_alphabet()


def piece(data):
    return "".join(ALPHABET[b] for b in data)


def tokenizer_file(component, algorithm, encoding, pretokenizer, merges, scaffold=()):
    """merges: [(left bytes, right bytes)] in rank order; learned tokens get ids from 257 on in
    order of first creation. As write_tokenizer_file() writes it."""
    tokens = [bytes([b]) for b in range(256)] + [None]
    id_of = {t: i for i, t in enumerate(tokens) if t is not None}
    pairs = []
    for left, right in merges:
        joined = left + right
        if joined not in id_of:
            id_of[joined] = len(tokens)
            tokens.append(joined)
        pairs.append([id_of[left], id_of[right]])
    scaffold_ids = sorted(id_of[t] for t in scaffold)

    def shortest(token_id, memo={}):
        # Demolition sequence: the token itself unless scaffold; otherwise the fewest normal
        # pieces over its merges, ties to the smallest sequence (vocabulary.h).
        if token_id not in scaffold_ids:
            return [token_id]
        best = None
        for (l, r) in pairs:
            if tokens[l] + tokens[r] == tokens[token_id] and l != token_id and r != token_id:
                candidate = shortest(l) + shortest(r)
                if best is None or (len(candidate), candidate) < (len(best), best):
                    best = candidate
        return best

    fields = [("tokenizer", component), ("format", "moelab-bpe"), ("version", 1),
              ("algorithm", algorithm), ("encoding", encoding), ("pretokenizer", pretokenizer),
              ("end_of_document", 256),
              ("tokens", [piece(t) if t is not None else "<|endoftext|>" for t in tokens]),
              ("merges", pairs)]
    if scaffold_ids:
        fields.append(("scaffold", scaffold_ids))
        fields.append(("demolition", {str(i): shortest(i) for i in scaffold_ids}))
    dump = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return "{" + ",\n ".join(f"{dump(k)}: {dump(v)}" for k, v in fields) + "}\n"


def tokenizer_file_seeds():
    merges = [(b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"a", b"n"), (b" ", b"a"),
              (b" a", b"n"), (b"\xc3", b"\xa9")]
    write("tokenizer_file", "bpe.json", tokenizer_file(
        "bpe", "bpe", {"policy": "merge-rank"}, {"kind": "gpt2", "split_digits": False}, merges))
    write("tokenizer_file", "lbpe.json", tokenizer_file(
        "lbpe", "bpe",
        {"policy": "longest-first", "length_unit": "chars", "tie_break": "position"},
        {"kind": "whitespace", "split_digits": True}, merges))
    # The vocabulary of tests/tokenizers/encoder_test.cpp's round trip: ab and abc are scaffold;
    # abc is produced twice (ab + c, a + bc).
    write("tokenizer_file", "scaffold-bpe.json", tokenizer_file(
        "scaffold-bpe", "scaffold-bpe", {"policy": "merge-rank"},
        {"kind": "whitespace", "split_digits": True},
        [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"a", b"bc")], scaffold=[b"ab", b"abc"]))


if __name__ == "__main__":
    recipe_seeds()
    safetensors_seeds()
    checkpoint_state_seeds()
    checkpoint_index_seeds()
    tokenizer_file_seeds()
    for target in sorted(p for p in SEEDS.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in target.iterdir())
        print(f"{target.relative_to(ROOT)}: {len(list(target.iterdir()))} files, {size} bytes")
