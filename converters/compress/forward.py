"""The Llama forward pass in torch (float32, CPU) over a ModelDesc's weights, written as the runtime
computes it (native/src/models/llama.cpp): RMSNorm, Q/K/V (+bias), Hugging Face rotate_half RoPE,
causal grouped-query attention, SwiGLU FFN, with each layer's own widths. Compression needs it in
pieces: one block at a time (calibration streams activations layer by layer), with hooks that see
each linear's input, and whole-model logits with gradients (pruning importance, distillation).

The tests hold it to transformers' LlamaForCausalLM and to the runtime in exact mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..llama_tensor_names import name as reg

# A hook sees (linear's registry id, layer, its input [tokens, in_features]), once per distinct
# input: ATTN_Q (shared by Q, K, V), ATTN_OUTPUT, FFN_GATE (shared by gate and up), FFN_DOWN.
InputHook = Callable[[str, int, torch.Tensor], None]


@dataclass
class LayerCache:
    """K and V of one layer for incremental decoding ([batch, kv_heads, positions, head_dim]).
    capacity > 0: k and v are allocated once for that many positions and filled in place (n held
    so far), so a decoding step allocates nothing here; 0: they grow by concatenation."""
    k: Optional[torch.Tensor] = None
    v: Optional[torch.Tensor] = None
    capacity: int = 0
    n: int = 0


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def inv_freq(weights: dict[str, torch.Tensor], hparams: dict) -> torch.Tensor:
    dh = int(hparams["head_dim"])
    f = float(hparams["rope_theta"]) ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    if "rope_freqs.weight" in weights:
        f = f / weights["rope_freqs.weight"].double()
    return f.float()


def rope(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """rotate_half RoPE on x [B, heads, T, Dh] at positions pos [T]."""
    ang = pos[:, None].float() * freqs[None, :]
    cos, sin = torch.cos(ang).repeat(1, 2), torch.sin(ang).repeat(1, 2)
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rot * sin


def _linear(W: dict[str, torch.Tensor], id: str, layer: int, x: torch.Tensor, hook: Optional[InputHook],
            bias_id: Optional[str] = None) -> torch.Tensor:
    if hook is not None:
        hook(id, layer, x.reshape(-1, x.shape[-1]))
    y = x @ W[reg(id, layer)].T
    if bias_id is not None and reg(bias_id, layer) in W:
        y = y + W[reg(bias_id, layer)]
    return y


def attention_block(W: dict[str, torch.Tensor], hp: dict, layer: int, x: torch.Tensor, pos0: int,
                    freqs: torch.Tensor, hook: Optional[InputHook] = None,
                    cache: Optional[LayerCache] = None, head_out: Optional[list] = None) -> torch.Tensor:
    """x + attention(norm(x)) for x [B, T, H]. head_out, if given, receives the attention output
    per head [B, T, heads, Dh] (pruning importance)."""
    B, T, _ = x.shape
    dh = int(hp["head_dim"])
    h = rms_norm(x, W[reg("ATTN_NORM", layer)], float(hp["rms_norm_eps"]))
    q = _linear(W, "ATTN_Q", layer, h, hook, "ATTN_Q_BIAS")
    k = _linear(W, "ATTN_K", layer, h, None, "ATTN_K_BIAS")
    v = _linear(W, "ATTN_V", layer, h, None, "ATTN_V_BIAS")
    nh, nkv = q.shape[-1] // dh, k.shape[-1] // dh
    q = q.view(B, T, nh, dh).transpose(1, 2)
    k = k.view(B, T, nkv, dh).transpose(1, 2)
    v = v.view(B, T, nkv, dh).transpose(1, 2)
    pos = torch.arange(pos0, pos0 + T)
    q, k = rope(q, pos, freqs), rope(k, pos, freqs)
    if cache is not None and cache.capacity:
        end = cache.n + T
        if end > cache.capacity:
            raise ValueError(f"KV cache of {cache.capacity} positions: {end} asked for")
        if cache.k is None:
            cache.k = k.new_empty(B, k.shape[1], cache.capacity, dh)
            cache.v = v.new_empty(B, v.shape[1], cache.capacity, dh)
        cache.k[:, :, cache.n:end] = k
        cache.v[:, :, cache.n:end] = v
        cache.n = end
        k, v = cache.k[:, :, :end], cache.v[:, :, :end]
    elif cache is not None:
        if cache.k is not None:
            k, v = torch.cat([cache.k, k], 2), torch.cat([cache.v, v], 2)
        cache.k, cache.v = k, v
    # grouped-query heads: SDPA pairs each query head with its KV head itself (no copy of K and
    # V per query head, which is two [B, heads, S, Dh] tensors per layer and step)
    gqa = {"enable_gqa": True} if nh != nkv else {}
    S = k.shape[2]
    if T == 1:
        att = F.scaled_dot_product_attention(q, k, v, **gqa)
    elif S == T:
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
    else:  # a chunk after cached positions: token t sees positions [0, S - T + t]
        mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **gqa)
    att = att.transpose(1, 2)  # [B, T, heads, Dh]
    if head_out is not None:
        head_out.append(att)
    att = att.reshape(B, T, nh * dh)
    return x + _linear(W, "ATTN_OUTPUT", layer, att, hook)


def ffn_block(W: dict[str, torch.Tensor], hp: dict, layer: int, x: torch.Tensor,
              hook: Optional[InputHook] = None, act_out: Optional[list] = None) -> torch.Tensor:
    """x + SwiGLU(norm(x)). act_out, if given, receives the down projection's input [B, T, F]."""
    h = rms_norm(x, W[reg("FFN_NORM", layer)], float(hp["rms_norm_eps"]))
    g = _linear(W, "FFN_GATE", layer, h, hook)
    u = _linear(W, "FFN_UP", layer, h, None)
    a = F.silu(g) * u
    if act_out is not None:
        act_out.append(a)
    return x + _linear(W, "FFN_DOWN", layer, a, hook)


def block(W: dict[str, torch.Tensor], hp: dict, layer: int, x: torch.Tensor, pos0: int, freqs: torch.Tensor,
          hook: Optional[InputHook] = None, cache: Optional[LayerCache] = None) -> torch.Tensor:
    return ffn_block(W, hp, layer, attention_block(W, hp, layer, x, pos0, freqs, hook, cache), hook)


def embed(W: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    return W["token_embd.weight"][ids]


def head(W: dict[str, torch.Tensor], hp: dict, x: torch.Tensor) -> torch.Tensor:
    """Final norm and output projection: logits [..., vocab]."""
    h = rms_norm(x, W["output_norm.weight"], float(hp["rms_norm_eps"]))
    out = W.get("output.weight", W["token_embd.weight"])
    return h @ out.T


def n_layers_of(W: dict[str, torch.Tensor]) -> int:
    n = 0
    while reg("ATTN_Q", n) in W:
        n += 1
    return n


def logits(W: dict[str, torch.Tensor], hp: dict, ids: torch.Tensor, *, pos0: int = 0,
           caches: Optional[list[LayerCache]] = None, return_hidden: bool = False):
    """Logits [B, T, vocab] of token ids [B, T] (and the last hidden state [B, T, H] if asked)."""
    freqs = inv_freq(W, hp)
    x = embed(W, ids)
    for l in range(n_layers_of(W)):
        x = block(W, hp, l, x, pos0, freqs, cache=None if caches is None else caches[l])
    out = head(W, hp, x)
    return (out, x) if return_hidden else out
