"""Every model family of families.def, end to end against PyTorch: a tiny random-weight model of the
family built with transformers (its own config class, small dims, randomised norms), converted by
edgert from the Hugging Face checkpoint and from a GGUF of it written with the `gguf` package in
llama.cpp's conventions (its tensor-name map, Gemma's 1 + w norms, Phi-3's fused tensors and
LongRoPE factor tensors), gives PyTorch's logits within the exact-mode tolerance and the same 32
greedy tokens. Sliding-window layers are checked far past the window and past the KV ring that
holds it (n_batch 16: rings of 128 rows), and with the quantized KV types; GGUFs of architectures
the runtime lacks are refused naming what is missing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers
from gguf.vocab import LlamaHfVocab

from conftest import STORIES
from converters import convert
from converters.edgt_file import read_edgt
from edgert import LLM
from edgert.errors import InvalidArgumentError, UnsupportedModelError
from edgert.model import ContextParams, Model
from test_logits_vs_transformers import LOGIT_TOL_REL, _check_greedy, _check_logits

transformers.logging.set_verbosity_error()

# phi4: Phi-4-mini's kind of phi3 (partial rotary: RoPE turns 3/4 of each head; tied embeddings);
# llama32: Llama 3.2's kind of llama (llama3 RoPE scaling, tied embeddings)
KINDS = ("qwen2", "qwen3", "gemma2", "gemma3", "phi3", "phi4", "llama32")
ARCH = {"phi4": "phi3", "llama32": "llama"}
PHI = ("phi3", "phi4")
WINDOW = 16          # the Gemma models' sliding window
PHI3_ORIGINAL = 64   # Phi-3's original context: LongRoPE's short factors up to it, long beyond


def family_config(kind: str):
    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if kind == "qwen2":  # q/k/v biases
        return transformers.Qwen2Config(**common, tie_word_embeddings=False, rope_theta=1e6, use_sliding_window=False)
    if kind == "qwen3":  # head_dim 32 is not hidden / heads (16): Qwen3 states it explicitly
        return transformers.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False, rope_theta=1e6)
    if kind == "gemma2":
        # Soft caps small enough to bend these random scores and logits; query_pre_attn_scalar as
        # llama.cpp assumes it for all but the 27B (test_gemma_query_scale checks another value).
        return transformers.Gemma2Config(**common, head_dim=32, query_pre_attn_scalar=32,
                                         sliding_window=WINDOW, attn_logit_softcapping=1.0,
                                         final_logit_softcapping=1.5)
    if kind == "gemma3":  # Q/K norms; local RoPE base on sliding layers, linear scaling on full ones
        return transformers.Gemma3TextConfig(
            **common, head_dim=32, query_pre_attn_scalar=32, sliding_window=WINDOW,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    if kind == "llama32":  # original context 64: wavelengths below 16 kept, above 64 scaled, between smoothed
        return transformers.LlamaConfig(
            **common, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if kind in PHI:  # fused qkv and gate_up; LongRoPE with distinct short and long factors
        partial = 0.75 if kind == "phi4" else 1.0
        pairs = int(16 * partial) // 2  # head_dim 16
        return transformers.Phi3Config(
            **{**common, "max_position_embeddings": 256}, original_max_position_embeddings=PHI3_ORIGINAL,
            tie_word_embeddings=kind == "phi4",
            rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "partial_rotary_factor": partial,
                             "short_factor": [1.0 + 0.1 * i for i in range(pairs)],
                             "long_factor": [1.0 + 0.7 * i for i in range(pairs)],
                             "original_max_position_embeddings": PHI3_ORIGINAL})
    raise ValueError(kind)


def make_family_hf(kind: str, dest: Path) -> Path:
    """A random `kind` checkpoint (f32) with stories260K's tokenizer (vocab 512). Norm weights are
    randomised around their neutral value (0 for Gemma's 1 + w, else 1) and biases around 0, so a
    converter that drops or misplaces one shows."""
    torch.manual_seed(sum(map(ord, kind)))
    model = transformers.AutoModelForCausalLM.from_config(family_config(kind))
    neutral = 0.0 if kind.startswith("gemma") else 1.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5)
            elif "norm" in name:
                p.copy_(neutral + torch.randn_like(p) * 0.1)
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    model.save_pretrained(dest, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(STORIES / "hf" / f, dest / f)
    return dest


def write_gguf(hf_dir: Path, out: Path) -> Path:
    """A GGUF of a tiny checkpoint as llama.cpp's convert_hf_to_gguf.py writes one: names from the
    `gguf` package's tensor map, Gemma norms stored as 1 + w, Phi-3's fused tensors kept fused and
    its LongRoPE factors as tensors, f32 data, the SentencePiece vocabulary of the checkpoint."""
    cfg = json.loads((hf_dir / "config.json").read_text())
    kind = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
            "Phi3ForCausalLM": "phi3"}[cfg["architectures"][0]]
    rope = cfg.get("rope_parameters") or {}
    partial = rope.get("partial_rotary_factor", 1.0)
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3, "gemma2": gguf.MODEL_ARCH.GEMMA2,
            "gemma3": gguf.MODEL_ARCH.GEMMA3, "phi3": gguf.MODEL_ARCH.PHI3}[kind]
    n_layers = cfg["num_hidden_layers"]
    w = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(f"tiny-{kind}")
    w.add_block_count(n_layers)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_key_length(cfg["head_dim"] if "head_dim" in cfg else cfg["hidden_size"] // cfg["num_attention_heads"])
    if partial != 1.0:  # as llama.cpp's Phi-3 converter: n_rot = int(factor * hidden) // heads
        w.add_rope_dimension_count(int(partial * cfg["hidden_size"]) // cfg["num_attention_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if kind == "gemma3":
        full = rope["full_attention"]
        w.add_rope_freq_base(full["rope_theta"])
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(full["factor"])
        w.add_sliding_window(cfg["sliding_window"])  # llama.cpp: local base 10000, pattern 6...
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg["layer_types"]])  # ...unless given
    else:
        w.add_rope_freq_base(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if kind == "gemma2":
        w.add_sliding_window(cfg["sliding_window"])  # layer pattern: llama.cpp's (every other one)
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    tensors: dict[str, np.ndarray] = {}
    if kind == "phi3":
        orig = rope["original_max_position_embeddings"]
        scale = cfg["max_position_embeddings"] / orig
        w.add_rope_scaling_attn_factors(float(np.sqrt(1 + np.log(scale) / np.log(orig))))
        w.add_rope_scaling_orig_ctx_len(orig)
        tensors["rope_factors_long.weight"] = np.asarray(rope["long_factor"], np.float32)
        tensors["rope_factors_short.weight"] = np.asarray(rope["short_factor"], np.float32)
    if kind == "llama":  # rope_freqs as llama.cpp's LlamaModel.generate_extra_tensors computes it
        factors = []
        for freq in 1.0 / rope["rope_theta"] ** (np.arange(0, 16, 2, dtype=np.float32) / 16):
            wavelen = 2 * np.pi / freq
            low, high = 64 / rope["low_freq_factor"], 64 / rope["high_freq_factor"]
            if wavelen < high:
                factors.append(1)
            elif wavelen > low:
                factors.append(rope["factor"])
            else:
                smooth = (64 / wavelen - rope["low_freq_factor"]) / (rope["high_freq_factor"] - rope["low_freq_factor"])
                factors.append(1 / ((1 - smooth) / rope["factor"] + smooth))
        tensors["rope_freqs.weight"] = np.asarray(factors, np.float32)
        w.add_rope_dimension_count(16)
    vocab = list(LlamaHfVocab(hf_dir).all_tokens())
    w.add_tokenizer_model("llama")
    w.add_token_list([t for t, _, _ in vocab])
    w.add_token_scores([s for _, s, _ in vocab])
    w.add_token_types([int(ty) for _, _, ty in vocab])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    template = json.loads((hf_dir / "tokenizer_config.json").read_text()).get("chat_template")
    if template:
        w.add_chat_template(template)
    names = gguf.get_tensor_name_map(arch, n_layers)
    from safetensors.torch import load_file
    for hf_name, t in load_file(hf_dir / "model.safetensors").items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        data = t.float()
        if kind.startswith("gemma") and hf_name.endswith("norm.weight"):
            data = data + 1.0  # llama.cpp's Gemma converters store the multiplier 1 + w
        if kind == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            # llama.cpp's permute: its rope turns adjacent pairs, Hugging Face's turns halves
            n = cfg["num_attention_heads"] if "q_proj" in hf_name else cfg["num_key_value_heads"]
            data = data.reshape(n, 2, data.shape[0] // n // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)
        tensors[name] = data.numpy()
    for name, data in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """family(kind) -> (hf dir, edgt from HF, edgt from GGUF, PyTorch model), made once."""
    made: dict[str, tuple] = {}

    def get(kind: str):
        if kind not in made:
            d = tmp_path_factory.mktemp(kind)
            hf = make_family_hf(kind, d / "hf")
            from_hf = convert(hf, d / "hf.edgt", progress=False)
            from_gguf = convert(write_gguf(hf, d / "m.gguf"), d / "gguf.edgt", progress=False)
            ref = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
            made[kind] = (hf, from_hf, from_gguf, ref)
        return made[kind]
    return get


def _ids(seed: int, n: int) -> list[int]:
    return [1] + np.random.default_rng(seed).integers(3, 512, n).tolist()


def _n_ctx(kind: str) -> int:
    # Phi-3 below its original context: short factors, as PyTorch uses for these lengths.
    return PHI3_ORIGINAL if kind in PHI else 256


@pytest.mark.parametrize("source", ["hf", "gguf"])
@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_greedy_match_pytorch(family, kind, source):
    hf, from_hf, from_gguf, ref = family(kind)
    path = from_hf if source == "hf" else from_gguf
    meta = read_edgt(path).metadata
    assert meta["architecture"] == ARCH.get(kind, kind)
    assert meta["hparams"].get("rope_dim") == (12 if kind == "phi4" else None)
    n_max = PHI3_ORIGINAL - 1 - 32 if kind in PHI else 100  # 100: far past the 16-wide window
    with LLM(path, n_ctx=_n_ctx(kind), n_threads=2, exact=True, kv_type="f16") as llm:
        for n in (1, 7, n_max):
            _check_logits(llm, ref, _ids(n, n))
        _check_greedy(llm, ref, _ids(3, 20), n=32)


@pytest.mark.parametrize("kind", KINDS)
def test_gguf_conversion_equals_hf_conversion(family, kind):
    """llama.cpp's conventions undone exactly (Llama's q/k row permutation among them): the same
    weights give bit-identical logits. Llama 3's rope_freqs are the one exception: llama.cpp
    computes them from float32 frequencies, edgert's HF converter from float64 ones."""
    _, from_hf, from_gguf, _ = family(kind)
    ids = _ids(5, 40)
    with LLM(from_hf, n_ctx=_n_ctx(kind), n_threads=1, kv_type="f16") as a, \
            LLM(from_gguf, n_ctx=_n_ctx(kind), n_threads=1, kv_type="f16") as b:
        x, y = a.logits(ids, all_positions=True), b.logits(ids, all_positions=True)
    if kind == "llama32":
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4 * float(x.std()))
    else:
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", PHI)
def test_phi3_long_factors_past_the_original_context(family, kind):
    """A context longer than Phi-3's original one takes LongRoPE's long factors (and PyTorch does
    for a sequence that long)."""
    _, from_hf, from_gguf, ref = family(kind)
    for path in (from_hf, from_gguf):
        with LLM(path, n_ctx=256, n_threads=2, exact=True, kv_type="f16") as llm:
            _check_logits(llm, ref, _ids(11, 150))


@pytest.mark.parametrize("kind", ["gemma2", "gemma3"])
def test_sliding_window_past_the_ring(family, kind):
    """n_batch 16 makes each sliding layer a ring of 128 rows; 300 positions wrap it twice. Every
    position's logits match PyTorch's, prefill and decode, and the quantized KV types stay close
    to f16 through the wraps (int4 keys keep their block offsets per ring slot)."""
    _, from_hf, _, ref = family(kind)
    ids = _ids(21, 299)
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    with LLM(from_hf, n_ctx=512, n_batch=16, n_threads=2, exact=True, kv_type="f16") as llm:
        got = llm.logits(ids, all_positions=True)
        err = np.abs(got - want).max(axis=1) / want.std(axis=1)
        assert err.max() < LOGIT_TOL_REL, f"worst position {int(err.argmax())}: {err.max():.4f}"
        _check_greedy(llm, ref, ids[:150], n=32)   # decode through the wrap too
    for kv in ("q8", "q4"):
        with LLM(from_hf, n_ctx=512, n_batch=16, n_threads=2, exact=True, kv_type=kv) as llm:
            got = llm.logits(ids, all_positions=True)
        lp = torch.log_softmax(torch.from_numpy(want).double(), -1)
        lq = torch.log_softmax(torch.from_numpy(got).double(), -1)
        kl = float((lp.exp() * (lp - lq)).sum(-1).max())
        assert kl < (0.01 if kv == "q8" else 0.1), f"{kv}: worst-position KL {kl:.4f}"


def test_ring_memory_is_bounded_by_the_window(family):
    """Sliding layers cost a ring whatever n_ctx is; the full layer grows with it."""
    _, from_hf, _, _ = family("gemma2")  # layers: sliding, full, sliding
    with Model(from_hf) as m:
        sizes = {}
        for n_ctx in (1024, 4096):
            with m.new_context(ContextParams(n_ctx=n_ctx, n_batch=16, kv_type="f16")) as ctx:
                sizes[n_ctx] = ctx.kv_bytes_total
                per_row = 2 * 32 * 2 * 2  # KV heads x head_dim x (K + V) x f16
                assert ctx.kv_bytes_per_token == per_row  # the one full layer
                assert ctx.kv_bytes_total == per_row * (n_ctx + 2 * 128)
        assert sizes[4096] - sizes[1024] == per_row * 3072


def test_window_state_trim_save_load(family, tmp_path):
    """With rings: save -> load -> continue gives the same logits bit for bit; a trim the rings can
    still serve works, one they cannot is refused with the smallest n_keep that works."""
    _, from_hf, _, _ = family("gemma2")
    ids = _ids(31, 199)
    params = ContextParams(n_ctx=512, n_batch=16, kv_type="q4", n_threads=2)
    with Model(from_hf) as m:
        with m.new_context(params) as a, m.new_context(params) as b, m.new_context(params) as c:
            a.eval(ids[:180])
            a.save(tmp_path / "s.kv")
            b.eval(_ids(3, 50))
            b.load(tmp_path / "s.kv")
            assert b.n_past == 180 and b.tokens == ids[:180]
            np.testing.assert_array_equal(b.eval(ids[180:], all_logits=True), a.eval(ids[180:], all_logits=True))
            # a trim inside what the rings still hold equals evaluating from scratch
            a.trim(190)
            c.eval(ids[:190])
            np.testing.assert_array_equal(a.eval(ids[190:], all_logits=True), c.eval(ids[190:], all_logits=True))
            with pytest.raises(InvalidArgumentError, match="trim to 0 or to at least"):
                a.trim(20)
            a.trim(0)
            assert a.n_past == 0


def test_llm_starts_over_when_the_ring_moved_on(family):
    """LLM reuses the cached prefix where the rings still hold its window, and re-evaluates from
    scratch where they do not: either way the tokens equal a fresh conversation's."""
    _, from_hf, _, _ = family("gemma2")
    long, other = _ids(41, 220), _ids(43, 30)
    with LLM(from_hf, n_ctx=512, n_batch=16, n_threads=2) as llm, \
            LLM(from_hf, n_ctx=512, n_batch=16, n_threads=2) as fresh:
        llm.generate_ids(long, max_tokens=4)
        for prompt in (long[:210] + other, long[:40] + other):  # inside the rings; long gone
            want = fresh.generate_ids(prompt, max_tokens=8)
            fresh.reset()
            assert llm.generate_ids(prompt, max_tokens=8) == want


def test_gemma_query_scale_is_read(family, tmp_path):
    """query_pre_attn_scalar other than head_dim (Gemma 2 27B's kind) comes from the config."""
    hf, _, _, _ = family("gemma2")
    dst = tmp_path / "m"
    shutil.copytree(hf, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["query_pre_attn_scalar"] = 24
    (dst / "config.json").write_text(json.dumps(cfg))
    path = convert(dst, tmp_path / "q.edgt", progress=False)
    assert read_edgt(path).metadata["hparams"]["query_pre_attn_scalar"] == 24
    ref = transformers.AutoModelForCausalLM.from_pretrained(dst, dtype=torch.float32).eval()
    with LLM(path, n_ctx=128, n_threads=1, exact=True, kv_type="f16") as llm:
        _check_logits(llm, ref, _ids(9, 40))


def _gguf_header(path: Path, arch: str, **keys) -> Path:
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(16)
    w.add_embedding_length(32)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    for k, v in keys.items():
        w.add_uint32(k, v)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab"] + [f"t{i}" for i in range(29)])
    w.add_token_merges(["a b"])
    w.add_tensor("token_embd.weight", np.zeros((32, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch,keys,what", [
    ("qwen3moe", {}, "mixture-of-experts"),
    ("llama", {"llama.expert_count": 8}, "mixture-of-experts"),
    ("clip", {}, "vision tower"),
    ("gemma3n", {}, "per-layer embeddings"),
    ("falcon", {}, "not supported .*supported: llama, qwen2, qwen3, gemma2, gemma3, phi3"),
])
def test_unsupported_gguf_names_what_is_missing(tmp_path, arch, keys, what):
    with pytest.raises(UnsupportedModelError, match=what):
        convert(_gguf_header(tmp_path / "x.gguf", arch, **keys), tmp_path / "x.edgt")
    assert not (tmp_path / "x.edgt").exists()


@pytest.mark.parametrize("cls,what", [("Qwen3MoeForCausalLM", "mixture-of-experts"),
                                      ("Gemma3ForConditionalGeneration", "vision tower")])
def test_unsupported_hf_names_what_is_missing(family, tmp_path, cls, what):
    hf, _, _, _ = family("qwen3")
    dst = tmp_path / "m"
    shutil.copytree(hf, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["architectures"] = [cls]
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=what):
        convert(dst, tmp_path / "x.edgt")


def test_partial_rotary_is_checked(family, tmp_path):
    """rope_dim (Phi-4-mini's partial rotary) is even and at most head_dim in the file, and only
    Phi-3 takes a partial rotary from transformers or llama.cpp: other families are refused by name."""
    from converters.edgt_file import EdgtWriter, TensorSpec
    from edgert.errors import ModelFormatError
    _, from_hf, _, _ = family("phi4")
    src = read_edgt(from_hf)
    specs = [TensorSpec(e.name, e.dtype, e.shape) for e in src.tensors.values()]
    for bad in (11, 18):
        meta = dict(src.metadata, hparams=dict(src.metadata["hparams"], rope_dim=bad))
        with EdgtWriter(tmp_path / f"r{bad}.edgt", meta, specs) as w:
            for s in specs:
                w.write(s.name, src.raw(s.name))
        with pytest.raises(ModelFormatError, match="rope_dim"):
            Model(tmp_path / f"r{bad}.edgt")
    hf, _, _, _ = family("qwen3")
    dst = tmp_path / "m"
    shutil.copytree(hf, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["partial_rotary_factor"] = 0.5
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="partial rotary"):
        convert(dst, tmp_path / "x.edgt")
    gg = _gguf_header(tmp_path / "g.gguf", "gemma2", **{"gemma2.attention.head_count_kv": 2,
                                                       "gemma2.rope.dimension_count": 8})
    with pytest.raises(UnsupportedModelError, match="partial rotary .* phi3 only"):
        convert(gg, tmp_path / "g.edgt")
    assert not (tmp_path / "x.edgt").exists() and not (tmp_path / "g.edgt").exists()
