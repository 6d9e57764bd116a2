"""The weight types beyond q4_0/q4_1/q8_0: q5_0, q5_1, iq4_nl, q3_k, q4_k, q5_k, q6_k, iq4_xs (GGUF's,
carried byte for byte) and edgert's own 3-bit q3_0.

- Byte layouts: the numpy decoders equal `gguf.quants.dequantize` (an oracle nobody here wrote) on
  random blocks with every field value, extreme and subnormal scales; q3_0 equals its definition.
- Quantizers: q5_0/q5_1 equal gguf's own bit for bit; the K-quant/iq4 searches beat a plain
  round-to-nearest of the same format (fails if the search is disabled); the 3-bit grid interface
  the compression stages use reproduces encode() and decodes onto its own grid.
- Recipes: llama.cpp's Q4_K_M / Q3_K_M mixture and shape fallbacks.
- End to end: a tiny Llama with 256-wide rows converted with each type runs in exact mode with
  PyTorch's logits for the weights gguf dequantizes (so the runtime's dequantizer and forward pass
  agree with gguf), and on the int8-activation SIMD path within the fast-path bound; a GGUF with
  these types converts byte for byte.
"""
from __future__ import annotations


import gguf
import numpy as np
import pytest

from conftest import make_wide_llama
from converters import convert
from converters import quantize as Q
from converters.dtypes import (F16, F32, IQ4_NL, IQ4_XS, Q3_0, Q3_K, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K,
                               Q6_K, Q8_0, DType)
from converters.edgt_file import read_edgt
from converters.recipe import target_dtype, use_more_bits

G = gguf.GGMLQuantizationType
GGUF_TYPES = {Q5_0: G.Q5_0, Q5_1: G.Q5_1, IQ4_NL: G.IQ4_NL, Q3_K: G.Q3_K, Q4_K: G.Q4_K, Q5_K: G.Q5_K,
              Q6_K: G.Q6_K, IQ4_XS: G.IQ4_XS}
# Byte offsets of each type's f16 fields (scale d, and dmin / m where present).
F16_FIELDS = {Q5_0: (0,), Q5_1: (0, 2), IQ4_NL: (0,), Q3_K: (108,), Q4_K: (0, 2), Q5_K: (0, 2), Q6_K: (208,),
              IQ4_XS: (0,), Q3_0: (0,)}
PROFILES = ("normal", "huge", "subnormal", "zero", "negative")


def _random_blocks(dt: DType, n: int, rng: np.random.Generator, profile: str) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, dt.block_bytes), dtype=np.uint8)  # every code and sub-scale
    for at in F16_FIELDS[dt]:
        if profile == "normal":
            v = rng.normal(size=n) * 0.02
        elif profile == "huge":
            v = rng.choice([-1, 1], n) * rng.uniform(30000, 65504, n)
        elif profile == "subnormal":
            v = rng.choice([-1, 1], n) * rng.uniform(1e-8, 6e-5, n)
        elif profile == "zero":
            v = np.zeros(n)
        else:
            v = -np.abs(rng.normal(size=n))
        raw[:, at:at + 2] = np.asarray(v, np.float16).view(np.uint8).reshape(n, 2)
    return raw


@pytest.mark.parametrize("dt", list(GGUF_TYPES), ids=lambda t: t.name)
def test_decode_equals_gguf(dt):
    rng = np.random.default_rng(dt.id)
    for profile in PROFILES:
        raw = _random_blocks(dt, 97, rng, profile)
        ours = Q.decode(raw, dt, (97 * dt.block_size,))
        ref = gguf.quants.dequantize(raw, GGUF_TYPES[dt]).reshape(-1)
        assert ours.dtype == np.float32
        # Bit for bit (the sign of zero included).
        np.testing.assert_array_equal(ours.view(np.uint32), ref.astype(np.float32).view(np.uint32),
                                      err_msg=f"{dt.name} {profile}")


def test_q3_0_decode_matches_its_definition():
    rng = np.random.default_rng(3)
    for profile in PROFILES:
        raw = _random_blocks(Q3_0, 41, rng, profile)
        ours = Q.decode(raw, Q3_0, (41 * 32,)).reshape(41, 32)
        for b in range(41):
            d = np.float32(raw[b, 0:2].view(np.float16)[0])
            qh = int.from_bytes(raw[b, 10:14].tobytes(), "little")
            for j in range(32):
                q = ((int(raw[b, 2 + j % 8]) >> (2 * (j // 8))) & 3) | (((qh >> j) & 1) << 2)
                assert ours[b, j] == d * np.float32(q - 4), (profile, b, j)


@pytest.mark.parametrize("dt,gt", [(Q5_0, G.Q5_0), (Q5_1, G.Q5_1)], ids=["q5_0", "q5_1"])
def test_legacy_encoders_equal_gguf(dt, gt):
    x = np.random.default_rng(5).normal(size=(33, 96)).astype(np.float32)
    x[3] = 0
    x[4, 7] = 40.0
    np.testing.assert_array_equal(Q.encode(x, dt), gguf.quants.quantize(x, gt).reshape(-1))


def _naive_k(x: np.ndarray, dt: DType) -> np.ndarray:
    """Plain round to nearest in dt's format (max-abs / min-max sub-block scales, quantized against
    the super-block scale, no search): what the quantizers must beat."""
    n = x.shape[0] * x.shape[1] // 256
    sb = x.reshape(n, 256).astype(np.float64)
    if dt in (Q3_K, Q6_K):
        nmax = 4 if dt is Q3_K else 32
        g = sb.reshape(n, 16, 16)
        s = np.abs(g).max(axis=2) / nmax
        d = np.float16(s.max(axis=1) / (31 if dt is Q3_K else 127)).astype(np.float64)[:, None]
        sc = np.clip(np.round(s / np.where(d > 0, d, 1)), 0, 31 if dt is Q3_K else 127)
        step = (d * sc)[:, :, None]
        q = np.clip(np.round(g / np.where(step > 0, step, 1)), -nmax, nmax - 1)
        return (q * step).reshape(x.shape)
    nmax = 15 if dt is Q4_K else 31
    g = sb.reshape(n, 8, 32)
    lo = np.minimum(g.min(axis=2), 0)
    s = (g.max(axis=2) - lo) / nmax
    d = np.float16(s.max(axis=1) / 63).astype(np.float64)[:, None]
    dm = np.float16((-lo).max(axis=1) / 63).astype(np.float64)[:, None]
    step = d * np.clip(np.round(s / np.where(d > 0, d, 1)), 0, 63)
    mn = dm * np.clip(np.round(-lo / np.where(dm > 0, dm, 1)), 0, 63)
    q = np.clip(np.round((g + mn[:, :, None]) / np.where(step > 0, step, 1)[:, :, None]), 0, nmax)
    return (q * step[:, :, None] - mn[:, :, None]).reshape(x.shape)


@pytest.mark.parametrize("dt", [Q3_K, Q4_K, Q5_K, Q6_K], ids=lambda t: t.name)
def test_k_quantizers_beat_plain_rounding(dt):
    rng = np.random.default_rng(7)
    for name, x in (("gaussian", rng.normal(size=(64, 512))),
                    ("heavy-tailed", rng.standard_t(3, size=(64, 512)) * 0.02)):
        x = x.astype(np.float32)
        ours = Q.decode(Q.encode(x, dt), dt, x.shape)
        err = np.sqrt(np.mean((ours - x) ** 2))
        naive = np.sqrt(np.mean((_naive_k(x, dt) - x) ** 2))
        assert err < 0.97 * naive, f"{dt.name} {name}: rmse {err:.5g} vs plain rounding {naive:.5g}"


def test_iq4_quantizers_beat_the_uniform_4bit_grid():
    x = np.random.default_rng(8).normal(size=(64, 512)).astype(np.float32)
    q40 = np.sqrt(np.mean((Q.decode(Q.encode(x, Q4_0), Q4_0, x.shape) - x) ** 2))
    for dt in (IQ4_NL, IQ4_XS):
        err = np.sqrt(np.mean((Q.decode(Q.encode(x, dt), dt, x.shape) - x) ** 2))
        assert err < 0.93 * q40, f"{dt.name}: rmse {err:.5g}, q4_0 {q40:.5g}"


def test_three_bit_grid_interface():
    w = np.random.default_rng(9).normal(size=(12, 512)).astype(np.float32) * 0.05
    sb = w.reshape(-1, 256)
    d, sc = Q.q3_k_scales(sb)
    assert d.dtype == np.float32 and np.array_equal(d, d.astype(np.float16).astype(np.float32))
    assert sc.dtype == np.int8 and sc.shape == (sb.shape[0], 16) and sc.min() >= -32 and sc.max() <= 31
    codes = Q.q3_k_codes(sb, d, sc)
    assert codes.max() <= 7
    raw = Q.q3_k_pack(codes, d, sc)
    assert raw.shape == (sb.shape[0], 110)
    np.testing.assert_array_equal(raw.reshape(-1), Q.encode(w, Q3_K))
    grid = Q.q3_k_steps(d, sc) * (codes.astype(np.float32) - 4)
    np.testing.assert_array_equal(gguf.quants.dequantize(raw, G.Q3_K).reshape(sb.shape), grid)
    # Codes chosen by the caller (a GPTQ step) round-trip too.
    other = np.random.default_rng(10).integers(0, 8, size=codes.shape).astype(np.uint8)
    np.testing.assert_array_equal(Q.decode(Q.q3_k_pack(other, d, sc), Q3_K, sb.shape),
                                  Q.q3_k_steps(d, sc) * (other.astype(np.float32) - 4))
    blocks = w.reshape(-1, 32)
    d0 = Q.q3_0_scales(blocks)
    c0 = Q.q3_0_codes(blocks, d0)
    np.testing.assert_array_equal(Q.q3_0_pack(c0, d0).reshape(-1), Q.encode(w, Q3_0))
    np.testing.assert_array_equal(Q.decode(Q.q3_0_pack(c0, d0), Q3_0, blocks.shape),
                                  Q.q3_0_steps(d0) * (c0.astype(np.float32) - 4))
    # q4_k: scale and min per 32.
    d, dmin, sc, m = Q.q4_k_scales(sb)
    c4 = Q.q4_k_codes(sb, d, dmin, sc, m)
    raw4 = Q.q4_k_pack(c4, d, dmin, sc, m)
    np.testing.assert_array_equal(raw4.reshape(-1), Q.encode(w, Q4_K))
    np.testing.assert_array_equal(gguf.quants.dequantize(raw4, G.Q4_K).reshape(sb.shape),
                                  Q.q4_k_steps(d, sc) * c4.astype(np.float32) - Q.q4_k_offsets(dmin, m))
    # 3.5 and 3.4375 bits per weight, scales included (issue 10 allows 3.6).
    assert Q3_0.block_bytes * 8 / Q3_0.block_size <= 3.6 and Q3_K.block_bytes * 8 / Q3_K.block_size <= 3.6


def test_k_recipes_follow_llama_cpp():
    n = 30
    more = [i for i in range(n) if use_more_bits(i, n)]
    # llama.cpp: i < n/8, i >= 7n/8, and every third layer from n/8 + 2 (n = 30: 3, 26, 5)
    assert more == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
    for i in range(n):
        v = target_dtype(f"blk.{i}.attn_v.weight", (192, 512), F32, "q4_k_m", n_layers=n)
        d = target_dtype(f"blk.{i}.ffn_down.weight", (512, 1536), F32, "q4_k_m", n_layers=n)
        q = target_dtype(f"blk.{i}.attn_q.weight", (512, 512), F32, "q4_k_m", n_layers=n)
        assert (v, d, q) == ((Q6_K, Q6_K, Q4_K) if i in more else (Q4_K, Q4_K, Q4_K)), i
        assert target_dtype(f"blk.{i}.attn_v.weight", (192, 512), F32, "q3_k_m", n_layers=n) is (Q5_K if i < 2 else Q4_K)
        assert target_dtype(f"blk.{i}.ffn_down.weight", (512, 1536), F32, "q3_k_m", n_layers=n) is (Q5_K if i < 1 else Q4_K)
        assert target_dtype(f"blk.{i}.attn_output.weight", (512, 512), F32, "q3_k_m", n_layers=n) is Q4_K
    # Output matrix: q6_k when its rows are whole super-blocks, else q8_0; tied embeddings count.
    assert target_dtype("output.weight", (32000, 2048), F32, "q4_k_m", n_layers=n) is Q6_K
    assert target_dtype("token_embd.weight", (32000, 2048), F32, "q4_k_m", n_layers=n) is Q4_K
    assert target_dtype("token_embd.weight", (49152, 576), F32, "q4_k_m", n_layers=n, tied_embeddings=True) is Q8_0
    assert target_dtype("token_embd.weight", (512, 256), F32, "q3_k", tied_embeddings=True) is Q6_K
    # Rows that are not whole super-blocks (SmolLM2's 576) fall back as llama.cpp does...
    assert target_dtype("blk.3.attn_q.weight", (576, 576), F32, "q4_k_m", n_layers=n) is Q5_0
    assert target_dtype("blk.3.attn_q.weight", (576, 576), F32, "q5_k_m", n_layers=n) is Q5_1
    assert target_dtype("blk.0.attn_v.weight", (192, 576), F32, "q4_k_m", n_layers=n) is Q8_0
    assert target_dtype("blk.5.attn_q.weight", (576, 576), F32, "q3_k_m", n_layers=n) is Q4_0
    assert target_dtype("blk.5.attn_q.weight", (576, 576), F32, "iq4_xs", n_layers=n) is IQ4_NL
    # ... except edgert's 3-bit recipe, which stays 3-bit.
    assert target_dtype("blk.5.attn_q.weight", (576, 576), F32, "q3_k") is Q3_0
    assert target_dtype("blk.5.ffn_down.weight", (576, 1536), F32, "q3_k") is Q3_K
    assert target_dtype("blk.5.ffn_down.weight", (576, 1530), F32, "q3_k") is F16
    assert target_dtype("output.weight", (512, 64), F32, "q3_0") is Q8_0


def test_mixtures_match_llama_cpp_on_smollm2():
    """Per-type tensor counts of the files llama-cpp-python 0.3.36's llama_model_quantize wrote from
    an f32 SmolLM2-135M GGUF (tied embeddings, 576-wide rows, so most K types fall back)."""
    from collections import Counter
    shapes = {"token_embd.weight": (49152, 576), "output_norm.weight": (576,)}
    for i in range(30):
        for name, shape in (("attn_q", (576, 576)), ("attn_k", (192, 576)), ("attn_v", (192, 576)),
                            ("attn_output", (576, 576)), ("ffn_gate", (1536, 576)), ("ffn_up", (1536, 576)),
                            ("ffn_down", (576, 1536)), ("attn_norm", (576,)), ("ffn_norm", (576,))):
            shapes[f"blk.{i}.{name}.weight"] = shape
    llama_cpp = {"q4_k_m": {"f32": 61, "q8_0": 15, "q5_0": 166, "q6_k": 14, "q4_k": 16},
                 "q3_k_m": {"f32": 61, "q8_0": 1, "q4_0": 120, "q5_0": 58, "q5_1": 2, "q5_k": 1, "q4_k": 29}}
    for recipe, want in llama_cpp.items():
        got = Counter(target_dtype(n, s, F32, recipe, n_layers=30, tied_embeddings=True).name for n, s in shapes.items())
        assert dict(got) == want, recipe


# -- end to end ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_hf(tmp_path_factory):
    """A tiny random Llama whose rows are whole 256-element super-blocks (hidden 256, FFN 512)."""
    return make_wide_llama(tmp_path_factory.mktemp("wide-llama"), num_layers=2, seed=11)[0]


def _reference_logits(hf_dir, edgt_path, ids):
    """PyTorch logits with every matrix replaced by its values in the .edgt file, dequantized by the
    gguf package (q3_0, edgert's own, by the numpy decoder tested above)."""
    import torch
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32)
    f = read_edgt(edgt_path)
    names = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight"}
    for i in range(2):
        for hf, ours in (("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                         ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                         ("mlp.down_proj", "ffn_down")):
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{ours}.weight"
    state = model.state_dict()
    with torch.no_grad():
        for hf_name, name in names.items():
            entry = f.tensors[name]
            if entry.dtype in GGUF_TYPES:
                w = gguf.quants.dequantize(f.raw(name), GGUF_TYPES[entry.dtype]).reshape(entry.shape)
            else:
                w = f.array(name)
            state[hf_name].copy_(torch.from_numpy(np.ascontiguousarray(w, np.float32)))
        return model(torch.tensor([ids])).logits[0, -1].float().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("recipe,expect", [
    ("q3_k", Q3_K), ("q3_0", Q3_0), ("q4_k_m", Q4_K), ("q5_k_m", Q5_K), ("q6_k", Q6_K), ("q5_0", Q5_0),
    ("q5_1", Q5_1), ("iq4_nl", IQ4_NL), ("iq4_xs", IQ4_XS)])
def test_models_in_each_type_match_pytorch(wide_hf, tmp_path, recipe, expect):
    from edgert import LLM
    out = convert(wide_hf, tmp_path / f"{recipe}.edgt", quantize=recipe, progress=False)
    f = read_edgt(out)
    assert f.tensors["blk.1.attn_q.weight"].dtype is expect
    ids = [1, 17, 42, 99, 256, 3, 77]
    want = _reference_logits(wide_hf, out, ids)
    # f32 KV: the default int8 KV alone moves these logits by ~0.03 std.
    exact = LLM(out, exact=True, kv_type="f32").logits(ids)
    err = float(np.abs(exact - want).max() / want.std())
    assert err < 0.02, f"{recipe}: exact-mode relative logit error {err:.4f}"
    fast = LLM(out, kv_type="f32").logits(ids)
    err = float(np.abs(fast - want).max() / want.std())
    # measured 0.05-0.08 for these types (the int8 rounding of activations)
    assert err < 0.2 and int(fast.argmax()) == int(want.argmax()), f"{recipe}: int8 path error {err:.4f}"


@pytest.mark.slow
def test_gguf_with_new_types_converts_byte_for_byte(wide_hf, tmp_path):
    """A GGUF holding every carried type (gguf's own quantizer where it has one, edgert's otherwise)
    converts with the blocks unchanged and runs."""
    src = convert(wide_hf, tmp_path / "f32.edgt", quantize="f32", progress=False)
    f = read_edgt(src)
    order = [Q4_K, Q5_K, Q6_K, Q3_K, IQ4_XS, Q5_0, Q5_1, IQ4_NL]
    path = tmp_path / "mixed.gguf"
    w = gguf.GGUFWriter(path, "llama")
    hp = f.metadata["hparams"]
    w.add_block_count(hp["num_layers"])
    w.add_context_length(256)
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_heads"])
    w.add_head_count_kv(hp["num_kv_heads"])
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    w.add_rope_freq_base(hp["rope_theta"])
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab"] + [f"t{i}" for i in range(hp["vocab_size"] - 3)])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    written = {}
    for k, (name, entry) in enumerate(sorted(f.tensors.items())):
        x = f.array(name)
        if len(entry.shape) == 1:
            w.add_tensor(name, x.astype(np.float32))
            continue
        if name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.attn_q.weight", "blk.1.attn_k.weight"):
            # GGUF stores Q/K rows in llama.cpp's interleaved RoPE order; the importer undoes it.
            heads = hp["num_heads"] if "attn_q" in name else hp["num_kv_heads"]
            x = x.reshape(heads, 2, x.shape[0] // heads // 2, x.shape[1]).swapaxes(1, 2).reshape(x.shape)
        dt = order[k % len(order)]
        raw = (gguf.quants.quantize(x, GGUF_TYPES[dt]) if dt in (Q5_0, Q5_1) else Q.encode(x, dt)).reshape(-1)
        written[name] = (dt, raw)
        w.add_tensor(name, raw.reshape(x.shape[0], -1), raw_dtype=GGUF_TYPES[dt])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = convert(path, tmp_path / "mixed.edgt", progress=False)
    g = read_edgt(out)
    assert {dt for dt, _ in written.values()} == set(order)
    for name, (dt, raw) in written.items():
        assert g.tensors[name].dtype is dt, name
        if "attn_q" in name or "attn_k" in name:
            # rows moved back to Hugging Face order, each row's bytes unchanged
            assert sorted(map(bytes, g.raw(name).reshape(g.tensors[name].shape[0], -1))) == \
                sorted(map(bytes, raw.reshape(g.tensors[name].shape[0], -1))), name
        else:
            np.testing.assert_array_equal(g.raw(name), raw, err_msg=name)
    from edgert import LLM
    assert np.isfinite(LLM(out).logits([1, 5, 9])).all()
