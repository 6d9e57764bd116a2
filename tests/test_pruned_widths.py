"""Per-layer widths (docs/format.md, hparams.layer_intermediate_size / layer_num_heads /
layer_num_kv_heads): a structurally pruned model with uneven FFN widths and KV groups per layer
runs in the runtime and gives the logits of PyTorch transformers running the same pruned weights.

The reference is built here by slicing a transformers model's modules directly (independently of
the compress package's pruning code); the edgert file is written from the same kept indices through
the compress writer. Exact mode (f32 weights): only float rounding separates the two.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from converters.compress import prune
from converters.compress.model_desc import from_source
from converters.compress.write import write_desc
from converters.edgt_file import read_edgt, write_edgt
from edgert import LLM
from edgert.errors import ModelFormatError

transformers.logging.set_verbosity_error()
TOL_REL = 0.02  # as test_logits_vs_transformers.LOGIT_TOL_REL: float rounding only

# Kept FFN channels and KV groups per layer of the tiny models (F=128, 4 query / 2 KV heads).
FFN_KEEP = [list(range(5, 101)), list(range(0, 128, 2))]     # 96 and 64 channels
GROUP_KEEP = [[1], [0, 1]]                                     # layer 0 loses KV group 0


def _slice_hf(model, ffn_keep, group_keep):
    """Prune a transformers Llama/Qwen2 model in place by replacing its Linear modules."""
    cfg = model.config
    dh = cfg.hidden_size // cfg.num_attention_heads
    r = cfg.num_attention_heads // cfg.num_key_value_heads

    def lin(old, rows=None, cols=None):
        w = old.weight.data
        b = old.bias.data if old.bias is not None else None
        if rows is not None:
            w = w[rows]
            b = b[rows] if b is not None else None
        if cols is not None:
            w = w[:, cols]
        new = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        new.weight.data = w.clone()
        if b is not None:
            new.bias.data = b.clone()
        return new

    for l, layer in enumerate(model.model.layers):
        f = torch.tensor(ffn_keep[l])
        kv = torch.tensor([g * dh + i for g in group_keep[l] for i in range(dh)])
        q = torch.tensor([g * r * dh + i for g in group_keep[l] for i in range(r * dh)])
        mlp, att = layer.mlp, layer.self_attn
        mlp.gate_proj, mlp.up_proj = lin(mlp.gate_proj, rows=f), lin(mlp.up_proj, rows=f)
        mlp.down_proj = lin(mlp.down_proj, cols=f)
        att.q_proj, att.k_proj, att.v_proj = lin(att.q_proj, rows=q), lin(att.k_proj, rows=kv), lin(att.v_proj, rows=kv)
        att.o_proj = lin(att.o_proj, cols=q)
    return model


@pytest.mark.parametrize("kind", ["llama_untied", "qwen2"])
def test_uneven_widths_match_transformers(tiny_hf, out_dir, kind):
    src = tiny_hf(kind)
    ref = _slice_hf(transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval(),
                    FFN_KEEP, GROUP_KEEP)
    desc = from_source(src)
    pruned = prune.apply(desc, [torch.tensor(k) for k in FFN_KEEP], [torch.tensor(g) for g in GROUP_KEEP], [])
    path = write_desc(pruned, out_dir / "pruned.edgt", compression={})
    hp = read_edgt(path).metadata["hparams"]
    assert hp["layer_intermediate_size"] == [96, 64]
    assert hp["layer_num_heads"] == [2, 4] and hp["layer_num_kv_heads"] == [1, 2]
    assert hp["intermediate_size"] == 96 and hp["num_heads"] == 4 and hp["num_kv_heads"] == 2  # maxima
    ids = [1, 17, 300, 42, 9, 250, 77, 3, 120, 5, 64, 480]
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    with LLM(path, n_ctx=64, n_threads=1, exact=True, kv_type="f32") as llm:
        info = llm.info
        # Decode one token at a time too: the KV cache rows of each layer are its own.
        got_last = llm.logits(ids)
        llm.reset()
        steps = [llm.logits(ids[:i + 1]) for i in range(len(ids))]
    err = float(np.abs(got_last - want[-1]).max() / want[-1].std())
    assert err < TOL_REL, err
    for i, got in enumerate(steps):
        assert float(np.abs(got - want[i]).max() / want[i].std()) < TOL_REL, i
    assert info.num_layers == 2


def _rewrite_hparams(src, dst, **changes):
    f = read_edgt(src)
    meta = json.loads(json.dumps(f.metadata))
    meta["hparams"].update(changes)
    write_edgt(dst, meta, [(e.name, e.dtype, np.array(f.raw(e.name)), e.shape) for e in f.tensors.values()])
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"layer_intermediate_size": [96]}, "layer_intermediate_size"),                  # wrong length
    ({"layer_intermediate_size": [96, 256]}, "layer_intermediate_size"),             # above the maximum
    ({"layer_num_heads": [2, "4"]}, "layer_num_heads"),                               # not an integer
    ({"layer_num_heads": [2, 3]}, "multiple of num_kv_heads"),                        # GQA ratio
    ({"layer_intermediate_size": [64, 64]}, "ffn_gate"),                             # shapes disagree
])
def test_bad_layer_lists_are_refused(tiny_hf, out_dir, changes, message):
    desc = from_source(tiny_hf("llama_untied"))
    pruned = prune.apply(desc, [torch.tensor(k) for k in FFN_KEEP], [torch.tensor(g) for g in GROUP_KEEP], [])
    good = write_desc(pruned, out_dir / "good.edgt", compression={})
    bad = _rewrite_hparams(good, out_dir / "bad.edgt", **changes)
    with pytest.raises(ModelFormatError, match=message):
        LLM(bad, n_ctx=32)


@pytest.fixture(scope="module")
def stories_hf_desc():
    from conftest import STORIES
    return lambda: from_source(STORIES / "hf")


@pytest.mark.parametrize("importance", ["act", "taylor"])
def test_prune_model_runs_in_the_runtime(stories_hf_desc, out_dir, importance):
    """prune_model's output (uneven, importance-chosen) runs in the runtime with the logits of the
    compress package's own forward pass on the same weights (which test_compress_forward holds
    to transformers)."""
    from converters.compress import forward
    desc = stories_hf_desc()
    ids = torch.randint(3, 512, (4, 64), generator=torch.Generator().manual_seed(0))
    pruned, res = prune.prune_model(desc, ids, prune.PruneSpec(ffn=0.3, heads=0.25, layers=1, importance=importance))
    assert pruned.n_layers == 4 and len(res.removed_layers) == 1
    total = sum(res.ffn_widths)
    assert abs(total / (172 * 4) - 0.7) < 0.05           # the fraction asked for, over the kept layers
    assert sum(res.kv_heads) == round(4 * 4 * 0.75)       # whole KV groups
    assert len(set(res.ffn_widths)) > 1 or len(set(res.kv_heads)) > 1  # uneven where importance says
    path = write_desc(pruned, out_dir / "p.edgt", compression={})
    seq = [1, 403, 407, 261, 378, 30, 90]
    with torch.no_grad():
        want = forward.logits(pruned.weights, pruned.hparams, torch.tensor([seq]))[0, -1].numpy()
    with LLM(path, n_ctx=64, n_threads=1, exact=True, kv_type="f32") as llm:
        got = llm.logits(seq)
    assert float(np.abs(got - want).max() / want.std()) < TOL_REL
