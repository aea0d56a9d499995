"""The mean next-token loss of an exported model, computed the way Hugging Face's Llama and
Mixtral modeling code computes its forward pass, written out here in NumPy (float64) from the
exported files alone: config.json and the safetensors weights.

    python3 hf_reference_loss.py EXPORT_DIR TOKENS SEQ_LEN

TOKENS holds little-endian int64 token ids, or is one of moelab's token shards (data.cache_dir/
tokens/*, Note [Token shard format] in core/data/token_shard.h). Windows are formed as moelab's evaluation forms them
(docs/checkpoints.md): seq_len + 1 tokens starting every seq_len tokens, the last one shorter,
each starting at position 0. Prints {"loss": mean over all targets, "targets": count} as JSON.

What follows Hugging Face's conventions (transformers' modeling_llama.py / modeling_mixtral.py):
RMSNorm as x / sqrt(mean(x^2) + eps) * weight; rotary embeddings on halves (rotate_half) with
inv_freq = 1 / theta^(2i/head_dim), divided by the factor of a linear rope_scaling; key/value
heads repeated for grouped-query attention; Linear weights (out, in); Llama's MLP
down(silu(gate(x)) * up(x)); Mixtral's router softmax over all experts, top-k, weights divided by
their sum, experts w2(silu(w1 x) * w3 x); the head tied to the embedding when tie_word_embeddings.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "python"))
from moelab_checkpoint import read_safetensors  # noqa: E402  (a plain safetensors reader)


def load_weights(directory):
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    weights = {}
    for file in files:
        tensors, metadata = read_safetensors(directory / file)
        assert metadata.get("format") == "pt", f"{file}: metadata format {metadata.get('format')}"
        weights.update({k: v.astype(np.float64) for k, v in tensors.items()})
    return weights


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def silu(x):
    return x / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expected_shapes(c):
    """Every tensor name of the layout with its shape, from config.json alone."""
    d, hd = c["hidden_size"], c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    q, kv, f = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd, c["intermediate_size"]
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], d), "model.norm.weight": (d,)}
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (c["vocab_size"], d)
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (q, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, q)})
        if c["model_type"] == "llama":
            shapes.update({p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
                           p + "mlp.down_proj.weight": (d, f)})
            continue
        shapes[p + "block_sparse_moe.gate.weight"] = (c["num_local_experts"], d)
        for e in range(c["num_local_experts"]):
            m = f"{p}block_sparse_moe.experts.{e}."
            shapes.update({m + "w1.weight": (f, d), m + "w2.weight": (d, f), m + "w3.weight": (f, d)})
    return shapes


class Model:
    def __init__(self, directory):
        self.c = json.loads((directory / "config.json").read_text())
        self.w = load_weights(directory)
        c = self.c
        assert c["hidden_act"] == "silu" and not c.get("attention_bias") and not c.get("mlp_bias"), c
        found = {name: tuple(t.shape) for name, t in self.w.items()}
        assert found == expected_shapes(c), "tensors differ from the layout config.json describes"
        self.head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        inv_freq = 1.0 / c["rope_theta"] ** (np.arange(0, self.head_dim, 2) / self.head_dim)
        scaling = c.get("rope_scaling")
        if scaling:
            assert scaling["rope_type"] == "linear", scaling
            inv_freq = inv_freq / scaling["factor"]
        self.inv_freq = inv_freq

    def attention(self, x, p):
        c, w = self.c, self.w
        t = x.shape[0]
        heads, kv_heads, hd = c["num_attention_heads"], c["num_key_value_heads"], self.head_dim
        q = (x @ w[p + "q_proj.weight"].T).reshape(t, heads, hd).transpose(1, 0, 2)
        k = (x @ w[p + "k_proj.weight"].T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
        v = (x @ w[p + "v_proj.weight"].T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
        freqs = np.arange(t)[:, None] * self.inv_freq[None, :]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb), np.sin(emb)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, heads // kv_heads, axis=0)  # repeat_kv
        v = np.repeat(v, heads // kv_heads, axis=0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
        out = (softmax(scores) @ v).transpose(1, 0, 2).reshape(t, heads * hd)
        return out @ w[p + "o_proj.weight"].T

    def mlp(self, x, p):
        w = self.w
        if self.c["model_type"] == "llama":
            gate = x @ w[p + "mlp.gate_proj.weight"].T
            up = x @ w[p + "mlp.up_proj.weight"].T
            return (silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        m = p + "block_sparse_moe."
        probs = softmax(x @ w[m + "gate.weight"].T)
        k = self.c["num_experts_per_tok"]
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        weights = np.take_along_axis(probs, top, axis=-1)
        weights = weights / weights.sum(axis=-1, keepdims=True)
        out = np.zeros_like(x)
        for e in range(self.c["num_local_experts"]):
            rows, slots = np.nonzero(top == e)
            if rows.size == 0:
                continue
            xe = x[rows]
            ye = (silu(xe @ w[f"{m}experts.{e}.w1.weight"].T) * (xe @ w[f"{m}experts.{e}.w3.weight"].T)) @ w[
                f"{m}experts.{e}.w2.weight"
            ].T
            out[rows] += weights[rows, slots][:, None] * ye
        return out

    def logits(self, ids):
        c, w = self.c, self.w
        eps = c["rms_norm_eps"]
        x = w["model.embed_tokens.weight"][ids]
        for layer in range(c["num_hidden_layers"]):
            p = f"model.layers.{layer}."
            x = x + self.attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), p + "self_attn.")
            x = x + self.mlp(rms_norm(x, w[p + "post_attention_layernorm.weight"], eps), p)
        x = rms_norm(x, w["model.norm.weight"], eps)
        head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
        return x @ head.T


def read_tokens(path):
    data = Path(path).read_bytes()
    if not data.startswith(b"MLSHARD1"):
        return np.frombuffer(data, dtype="<i8")
    id_bytes, count = int.from_bytes(data[12:16], "little"), int.from_bytes(data[16:24], "little")
    return np.frombuffer(data, dtype=f"<u{id_bytes}", count=count, offset=48).astype(np.int64)


def main(argv):
    directory, tokens_file, seq_len = Path(argv[1]), argv[2], int(argv[3])
    tokens = read_tokens(tokens_file)
    model = Model(directory)
    total, count = 0.0, 0
    for start in range(0, len(tokens) - 1, seq_len):
        window = tokens[start : start + seq_len + 1]
        logits = model.logits(window[:-1])
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= log_probs[np.arange(len(window) - 1), window[1:]].sum()
        count += len(window) - 1
    print(json.dumps({"loss": total / count, "targets": count}))


if __name__ == "__main__":
    main(sys.argv)
