"""`edgert export-onnx MODEL.edgt -o DIR`: an edgert LLM as an ONNX decoder for onnxruntime and
onnxruntime-genai.

DIR gets `model.onnx` (+ `model.onnx.data`, the weights, as ONNX external data), `genai_config.json`,
`tokenizer.json` and `tokenizer_config.json`. The graph is the `llama` architecture of
docs/format.md as one decoder step over any number of new tokens:

  inputs   input_ids int64 [batch, seq], attention_mask int64 [batch, past + seq],
           position_ids int64 [batch, seq], past_key_values.{i}.key / .value f32
           [batch, kv_heads, past, head_dim]
  outputs  logits f32 [batch, seq, vocab], present.{i}.key / .value [batch, kv_heads,
           past + seq, head_dim]

Weights: q4_0 and q4_1 matrices become `com.microsoft` MatMulNBits (bits 4, block 32, the
nibbles repacked from ggml's order to MatMulNBits' and the zero points as floats: q4_0 has 8, q4_1
has -m/d so that (q - zp) * d = d*q + m), q8_0 becomes MatMulNBits with bits 8 (its default zero point, 128);
f32/f16/bf16 matrices become MatMul against the float32 transpose. The token embedding is a float32
Gather table; a tied output head reuses the embedding's quantized bytes. Attention is plain ONNX ops
(RMSNorm, RoPE in the Hugging Face rotate-half convention with the angles in float64 as edgert
computes them, grouped-query attention by broadcasting each KV head over its query heads, causal +
padding mask, softmax), so any onnxruntime build runs it.

The logits equal edgert's with `exact=True` (float activations against the same quantized weights)
to float rounding; tests/test_onnx_export.py checks SmolLM2 and stories260K, and onnxruntime-genai's
greedy tokens against edgert's.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import EdgertError, UnsupportedModelError

OPSET = 21
MS_OPSET = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .edgt file")
    p.add_argument("-o", "--output-dir", required=True, help="directory to write model.onnx into")
    p.add_argument("--max-length", type=int, default=0,
                   help="genai_config max_length (default: min(context length, 2048))")


def run(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise EdgertError('edgert export-onnx needs the sensor extra: '
                          'pip install "edgert[sensor]"') from None
    out = export_onnx(args.model, args.output_dir, max_length=args.max_length or None)
    print(f"wrote {out / 'model.onnx'} and genai_config.json")
    return 0


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def node(self, op: str, inputs: list[str], hint: str, n_out: int = 1, domain: str = "",
             **attrs: Any) -> Any:
        from onnx import helper
        outs = [self.name(hint) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(op), domain=domain
                                           or None, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, arr: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name


def _repack_q4(raw: np.ndarray, rows: int, cols: int, with_min: bool) -> tuple[np.ndarray, ...]:
    """ggml q4 blocks -> MatMulNBits' (B [rows, cols/32, 16] uint8, scales, float zero points)."""
    bpr = cols // 32
    bsz = 20 if with_min else 18
    blk = raw.reshape(rows * bpr, bsz)
    d = blk[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    if with_min:
        m = blk[:, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1)
        qs = blk[:, 4:20]
    else:
        m = None
        qs = blk[:, 2:18]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # ggml: j low nibble, j+16 high nibble
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # MatMulNBits: pairs in a byte
    if with_min:
        if (d == 0).any():
            return ()  # x = m for a whole block: no (q - zp) * d form; the caller uses floats
        zp = (-m / d).astype(np.float32)
    else:
        zp = np.full(d.shape, 8.0, np.float32)
    return packed.reshape(rows, bpr, 16), d, zp


def _repack_q8(raw: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, ...]:
    bpr = cols // 32
    blk = raw.reshape(rows * bpr, 34)
    d = blk[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    q = (blk[:, 2:34].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return q.reshape(rows, bpr, 32), d, None  # 8-bit: the default zero point is 128


def _linear(b: _Builder, f: Any, x: str, name: str) -> str:
    """x [..., in] @ W^T where W = f's tensor `name` [out, in]."""
    e = f.tensors[name]
    rows, cols = e.shape
    kind = e.dtype.name
    packed: tuple[np.ndarray, ...] = ()
    bits = 4
    if kind in ("q4_0", "q4_1"):
        packed = _repack_q4(np.asarray(f.raw(name)), rows, cols, kind == "q4_1")
    elif kind == "q8_0":
        packed = _repack_q8(np.asarray(f.raw(name)), rows, cols)
        bits = 8
    if packed:
        qb, scales, zp = packed
        ins = [x, b.const(qb, name + ".qweight"), b.const(scales, name + ".scales")]
        if zp is not None:
            ins.append(b.const(zp, name + ".zero_points"))
        return b.node("MatMulNBits", ins, name.replace(".weight", ""), domain="com.microsoft",
                      K=cols, N=rows, bits=bits, block_size=32, accuracy_level=0)
    w = np.ascontiguousarray(f.array(name).astype(np.float32).T)
    return b.node("MatMul", [x, b.const(w, name + ".T")], name.replace(".weight", ""))


def _rmsnorm(b: _Builder, x: str, w: np.ndarray, eps: float, hint: str) -> str:
    sq = b.node("Mul", [x, x], hint + ".sq")
    ms = b.node("ReduceMean", [sq, b.const(np.array([-1], np.int64), "axes")], hint + ".ms",
                keepdims=1)
    inv = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [ms, b.const(
        np.array(eps, np.float32), "eps")], hint)], hint)], hint + ".inv")
    return b.node("Mul", [b.node("Mul", [x, inv], hint), b.const(w.astype(np.float32), hint + ".w")],
                  hint + ".out")


def export_onnx(model: str | os.PathLike, output_dir: str | os.PathLike,
                max_length: Optional[int] = None) -> Path:
    """Write DIR/model.onnx, genai_config.json and the tokenizer files (see the file banner)."""
    import onnx
    from onnx import TensorProto, helper

    from .converters.edgt_file import read_edgt
    f = read_edgt(model)
    meta = f.metadata
    if meta.get("architecture") != "llama":
        raise UnsupportedModelError(f"export-onnx handles the llama architecture, not "
                                    f"{meta.get('architecture')!r}")
    hp = meta["hparams"]
    H, L, V = hp["hidden_size"], hp["num_layers"], hp["vocab_size"]
    Nh, Nkv, Dh = hp["num_heads"], hp["num_kv_heads"], hp["head_dim"]
    rep = Nh // Nkv
    eps = float(hp["rms_norm_eps"])
    if hp.get("attention_bias"):
        raise UnsupportedModelError("export-onnx does not write attention biases yet (Qwen2)")
    b = _Builder()

    # inputs
    ids, mask, pos = "input_ids", "attention_mask", "position_ids"
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info(mask, TensorProto.INT64, ["batch", "total_seq"]),
              helper.make_tensor_value_info(pos, TensorProto.INT64, ["batch", "seq"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])]
    for i in range(L):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kv}", TensorProto.FLOAT, ["batch", Nkv, "past_seq", Dh]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kv}", TensorProto.FLOAT, ["batch", Nkv, "total_seq", Dh]))

    # embedding
    emb = f.array("token_embd.weight").astype(np.float32)
    x = b.node("Gather", [b.const(emb, "token_embd"), ids], "embed", axis=0)

    # RoPE tables from position_ids (angles in float64, as edgert's rope_inplace)
    inv = np.power(np.float64(hp["rope_theta"]), -2.0 * np.arange(Dh // 2) / Dh)
    if "rope_freqs.weight" in f.tensors:
        inv = inv / f.array("rope_freqs.weight").astype(np.float64)
    inv32 = inv.astype(np.float32).astype(np.float64)  # edgert keeps inv_freq as float
    posd = b.node("Cast", [pos], "posd", to=TensorProto.DOUBLE)
    ang = b.node("Mul", [b.node("Unsqueeze", [posd, b.const(np.array([-1], np.int64), "ax")],
                                "pos3"), b.const(inv32, "inv_freq")], "angle")
    cos = b.node("Cast", [b.node("Cos", [ang], "cos64")], "cos", to=TensorProto.FLOAT)
    sin = b.node("Cast", [b.node("Sin", [ang], "sin64")], "sin", to=TensorProto.FLOAT)
    # [B, S, Dh/2] -> [B, S, 1, Dh] (both halves share the angle)
    cos = b.node("Unsqueeze", [b.node("Concat", [cos, cos], "cosf", axis=-1),
                               b.const(np.array([2], np.int64), "ax")], "cos4")
    sin = b.node("Unsqueeze", [b.node("Concat", [sin, sin], "sinf", axis=-1),
                               b.const(np.array([2], np.int64), "ax")], "sin4")

    # attention bias [B, 1, 1, S, T]: key j is visible to the query at sequence index
    # past + i if j <= past + i and mask[j] (indices, not position ids: left padding shifts those)
    sq = b.const(np.array([0], np.int64), "ax")
    T = b.node("Squeeze", [b.node("Shape", [mask], "total", start=1, end=2), sq], "T")
    S = b.node("Squeeze", [b.node("Shape", [ids], "seq", start=1, end=2), sq], "S")
    one = b.const(np.array(1, np.int64), "one")
    kpos = b.node("Range", [b.const(np.array(0, np.int64), "zero"), T, one], "kpos")
    qidx = b.node("Range", [b.node("Sub", [T, S], "past"), T, one], "qidx")
    causal = b.node("LessOrEqual", [kpos, b.node("Unsqueeze", [qidx, b.const(
        np.array([-1], np.int64), "ax")], "qcol")], "causal")                      # [S, T]
    padok = b.node("Cast", [b.node("Unsqueeze", [mask, b.const(np.array([1], np.int64), "ax")],
                                   "mask3")], "padok", to=TensorProto.BOOL)        # [B, 1, T]
    ok = b.node("And", [causal, padok], "visible")
    neg = b.node("Where", [ok, b.const(np.array(0.0, np.float32), "zero_f"),
                           b.const(np.array(-3.4028234663852886e38, np.float32), "neg")], "bias")
    attn_bias = b.node("Unsqueeze", [neg, b.const(np.array([1, 2], np.int64), "ax")], "bias5")

    half = Dh // 2
    h_sl = [b.const(np.array([0], np.int64), "s0"), b.const(np.array([half], np.int64), "sh"),
            b.const(np.array([Dh], np.int64), "sd"), b.const(np.array([-1], np.int64), "sa")]

    def rope(t: str) -> str:  # t [B, S, heads, Dh]
        lo = b.node("Slice", [t, h_sl[0], h_sl[1], h_sl[3]], "lo")
        hi = b.node("Slice", [t, h_sl[1], h_sl[2], h_sl[3]], "hi")
        rot = b.node("Concat", [b.node("Neg", [hi], "nhi"), lo], "rot", axis=-1)
        return b.node("Add", [b.node("Mul", [t, cos], "tc"), b.node("Mul", [rot, sin], "rs")],
                      "roped")

    scale = b.const(np.array(1.0 / np.sqrt(Dh), np.float32), "scale")
    for i in range(L):
        p = f"blk.{i}."
        hn = _rmsnorm(b, x, f.array(p + "attn_norm.weight"), eps, f"l{i}.attn_norm")
        q = _linear(b, f, hn, p + "attn_q.weight")
        k = _linear(b, f, hn, p + "attn_k.weight")
        v = _linear(b, f, hn, p + "attn_v.weight")
        q4 = rope(b.node("Reshape", [q, b.const(np.array([0, 0, Nh, Dh], np.int64), "shp")], "q4"))
        k4 = rope(b.node("Reshape", [k, b.const(np.array([0, 0, Nkv, Dh], np.int64), "shp")], "k4"))
        v4 = b.node("Reshape", [v, b.const(np.array([0, 0, Nkv, Dh], np.int64), "shp")], "v4")
        k_new = b.node("Transpose", [k4], "kt", perm=[0, 2, 1, 3])      # [B, Nkv, S, Dh]
        v_new = b.node("Transpose", [v4], "vt", perm=[0, 2, 1, 3])
        pk = f"present.{i}.key"
        pv = f"present.{i}.value"
        b.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.key", k_new], [pk],
                                        axis=2, name=b.name("Concat")))
        b.nodes.append(helper.make_node("Concat", [f"past_key_values.{i}.value", v_new], [pv],
                                        axis=2, name=b.name("Concat")))
        # queries grouped by KV head: [B, S, Nkv, rep, Dh] -> [B, Nkv, rep, S, Dh]
        q5 = b.node("Transpose", [b.node("Reshape", [q4, b.const(
            np.array([0, 0, Nkv, rep, Dh], np.int64), "shp")], "q5")], "q5t", perm=[0, 2, 3, 1, 4])
        k5 = b.node("Unsqueeze", [pk, b.const(np.array([2], np.int64), "ax")], "k5")
        v5 = b.node("Unsqueeze", [pv, b.const(np.array([2], np.int64), "ax")], "v5")
        kT = b.node("Transpose", [k5], "k5t", perm=[0, 1, 2, 4, 3])
        sc = b.node("Add", [b.node("Mul", [b.node("MatMul", [q5, kT], "qk"), scale], "qks"),
                            attn_bias], "scores")
        pr = b.node("Softmax", [sc], "probs", axis=-1)
        o5 = b.node("MatMul", [pr, v5], "pv")                             # [B, Nkv, rep, S, Dh]
        o = b.node("Reshape", [b.node("Transpose", [o5], "ot", perm=[0, 3, 1, 2, 4]),
                               b.const(np.array([0, 0, Nh * Dh], np.int64), "shp")], "attn")
        x = b.node("Add", [x, _linear(b, f, o, p + "attn_output.weight")], f"l{i}.res1")
        hn = _rmsnorm(b, x, f.array(p + "ffn_norm.weight"), eps, f"l{i}.ffn_norm")
        gate = _linear(b, f, hn, p + "ffn_gate.weight")
        up = _linear(b, f, hn, p + "ffn_up.weight")
        act = b.node("Mul", [b.node("Mul", [gate, b.node("Sigmoid", [gate], "sg")], "silu"), up],
                     "swiglu")
        x = b.node("Add", [x, _linear(b, f, act, p + "ffn_down.weight")], f"l{i}.res2")
    hn = _rmsnorm(b, x, f.array("output_norm.weight"), eps, "output_norm")
    head = "token_embd.weight" if hp.get("tie_embeddings") else "output.weight"
    logits = _linear(b, f, hn, head)
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    graph = helper.make_graph(b.nodes, meta.get("name") or "edgert", inputs, outputs,
                              initializer=b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                helper.make_opsetid("com.microsoft", MS_OPSET)],
                          producer_name="edgert.onnx_export")
    m.ir_version = 10
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.onnx", "model.onnx.data"):
        (out / stale).unlink(missing_ok=True)
    onnx.save_model(m, str(out / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=1024)
    _write_genai(out, meta, max_length)
    return out


def _write_genai(out: Path, meta: dict[str, Any], max_length: Optional[int]) -> None:
    hp, tok = meta["hparams"], meta["tokenizer"]
    eos = tok["eos_token_ids"]
    ctx = int(hp["context_length"])
    cfg = {
        "model": {
            "bos_token_id": tok["bos_token_id"],
            "context_length": ctx,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": hp["head_dim"],
                "hidden_size": hp["hidden_size"],
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids",
                           "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": hp["num_heads"],
                "num_hidden_layers": hp["num_layers"],
                "num_key_value_heads": hp["num_kv_heads"],
            },
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": tok.get("pad_token_id") if tok.get("pad_token_id") is not None
            else eos[0],
            "type": "llama",
            "vocab_size": hp["vocab_size"],
        },
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True,
                   "length_penalty": 1.0, "max_length": int(max_length or min(ctx, 2048)),
                   "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False,
                   "repetition_penalty": 1.0, "temperature": 1.0, "top_k": 1, "top_p": 1.0},
    }
    (out / "genai_config.json").write_text(json.dumps(cfg, indent=2))
    (out / "tokenizer.json").write_text(tok["json"])
    tj = json.loads(tok["json"])
    vocab_by_id = {i: t for t, i in tj.get("model", {}).get("vocab", {}).items()} \
        if isinstance(tj.get("model", {}).get("vocab"), dict) else {}
    for a in tj.get("added_tokens", []):
        vocab_by_id[a["id"]] = a["content"]
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": bool(tok.get("add_bos")), "add_eos_token": False,
            "bos_token": vocab_by_id.get(tok["bos_token_id"]),
            "eos_token": vocab_by_id.get(eos[0]),
            "model_max_length": ctx,
            "clean_up_tokenization_spaces": False}
    if meta.get("chat_template"):
        tcfg["chat_template"] = meta["chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2))
