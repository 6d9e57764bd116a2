"""Import of GPTQ and AWQ checkpoints in Hugging Face layout (`qweight`/`qzeros`/`scales`) into
edgert blocks without re-quantizing: each 4-bit code is carried as a code, each group scale as
the block scale.

Supported: 4 bits; group size 32, 64 or 128; GPTQ with desc_act false (or a g_idx that is the
identity grouping i // group_size), checkpoint_format "gptq" (v1: stored zeros are zero − 1, as
AutoGPTQ and GPTQModel write them) or "gptq_v2"; AWQ "gemm" packing (AutoAWQ's default) with
zero_point true. Refused with a message: other bit widths, act-order (a g_idx that permutes
groups: the runtime's blocks are contiguous), AWQ gemv/marlin/exllama packings, no group size
(-1: one group per row; a block can hold it, but no tested writer emits it), Marlin/exllama
checkpoints.

Format definitions (per output channel o, input channel i, group g = i // group_size):
  GPTQ  qweight int32 [in/8, out]: code q[i, o] = (qweight[i // 8, o] >> 4·(i % 8)) & 15
        qzeros  int32 [groups, out/8]: z[g, o] = (qzeros[g, o // 8] >> 4·(o % 8)) & 15 (+1 in v1)
        scales  f16 [groups, out];       w[o, i] = scales[g, o] · (q[i, o] − z[g, o])
  AWQ   qweight int32 [in, out/8]: nibble k of word c holds output channel 8c + ORDER[k],
        ORDER = (0, 2, 4, 6, 1, 3, 5, 7); qzeros int32 [groups, out/8] packed the same way;
        scales f16 [groups, out];        w[o, i] = scales[g, o] · (q[i, o] − z[g, o])

Mapping onto edgert blocks (32 input channels, so every block lies inside one group):
  - every zero in a tensor is 8 (symmetric GPTQ): q4_0 with d = scale, nibble = q — exact;
  - otherwise q4_1 with d = scale, m = −scale·z rounded to f16, nibble = q. Exact where −scale·z
    is an f16 value (z = 0, or a scale with enough trailing zero bits); elsewhere each weight is
    off by the rounding of m, at most half an f16 ulp of scale·z (≤ 2⁻¹¹·z·scale < 0.0074 of
    the quantization step). `exact=True` (`edgert convert --exact-import`) writes such tensors
    as q8_0 instead (d = scale, q8 = q − z ∈ [−15, 15]), exact at 8.5 bits per weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgert.errors import UnsupportedModelError

from . import dtypes

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass(frozen=True)
class _Entry:
    shape: tuple[int, ...]


def _nibbles(words: np.ndarray) -> np.ndarray:
    """int32 words [..., n] -> their 8 nibbles [..., n, 8], nibble k = bits 4k..4k+3."""
    w = words.astype(np.uint32)
    return ((w[..., None] >> (4 * np.arange(8, dtype=np.uint32))) & 15).astype(np.uint8)


class PackedLinears:
    """The float-named weights (`...q_proj.weight`) of a GPTQ/AWQ checkpoint's packed linears, as
    edgert block tensors; quacks like SafetensorsFile (entries, dtype_of, raw) so the HF reader
    takes them like any other tensor."""

    def __init__(self, src, qcfg: dict[str, Any], where: dict[str, Any], *, exact: bool = False):
        method = str(qcfg.get("quant_method", "")).lower()
        if method not in ("gptq", "awq"):
            raise UnsupportedModelError(f"{src}: quantization_config.quant_method {method!r} is not "
                                        "imported; edgert imports gptq and awq checkpoints")
        bits = int(qcfg.get("bits", qcfg.get("w_bit", 0)))
        group = int(qcfg.get("group_size", qcfg.get("q_group_size", 0)))
        if bits != 4:
            raise UnsupportedModelError(f"{src}: {method} with {bits} bits; edgert imports 4-bit checkpoints")
        if group not in (32, 64, 128):
            raise UnsupportedModelError(f"{src}: {method} group_size {group}; edgert imports 32, 64 or 128")
        if method == "gptq":
            fmt = str(qcfg.get("checkpoint_format", qcfg.get("format", "gptq"))).lower()
            if fmt not in ("gptq", "gptq_v2"):
                raise UnsupportedModelError(f"{src}: GPTQ checkpoint_format {fmt!r}; edgert imports gptq and gptq_v2")
            self.zero_offset = 1 if fmt == "gptq" else 0
        else:
            version = str(qcfg.get("version", "gemm")).lower()
            if version != "gemm":
                raise UnsupportedModelError(f"{src}: AWQ version {version!r}; edgert imports the gemm packing")
            if not qcfg.get("zero_point", True):
                raise UnsupportedModelError(f"{src}: AWQ without zero points is not imported")
            self.zero_offset = 0
        self.src, self.method, self.group, self.exact = src, method, group, exact
        self.entries: dict[str, _Entry] = {}
        self._types: dict[str, dtypes.DType] = {}
        self._parts: dict[str, tuple[Any, str]] = {}
        self.stats = {"exact": 0, "rounded_offsets": 0, "max_offset_error": 0.0}
        prefixes = sorted({n[:-len(".qweight")] for n in where if n.endswith(".qweight")})
        for p in prefixes:
            if not p.endswith(_LINEARS):
                raise UnsupportedModelError(f"{src}: packed tensor {p}.qweight is not a llama linear")
            for part in ("qweight", "qzeros", "scales"):
                if f"{p}.{part}" not in where:
                    raise UnsupportedModelError(f"{src}: {p}.{part} is missing")
                self._parts[f"{p}.{part}"] = (where.pop(f"{p}.{part}"), f"{p}.{part}")
            if f"{p}.g_idx" in where:
                self._parts[f"{p}.g_idx"] = (where.pop(f"{p}.g_idx"), f"{p}.g_idx")
            bias = f"{p}.bias"
            if bias in where:
                if not np.any(where[bias].array(bias)):  # GPTQ writers save a zero bias for every linear
                    where.pop(bias)
            out_f, in_f = self._shape(p)
            name = f"{p}.weight"
            self.entries[name] = _Entry((out_f, in_f))
        self._prefix_of = {f"{p}.weight": p for p in prefixes}

    def _get(self, key: str) -> np.ndarray:
        shard, n = self._parts[key]
        a = shard.array(n)
        want = np.int32 if key.endswith((".qweight", ".qzeros", ".g_idx")) else (np.float16, np.float32)
        if a.dtype not in (want if isinstance(want, tuple) else (want,)):
            raise UnsupportedModelError(f"{self.src}: {n} has dtype {a.dtype}, expected {want}")
        return a if a.dtype == np.int32 else a.astype(np.float32)

    def _shape(self, p: str) -> tuple[int, int]:
        shard, n = self._parts[f"{p}.qweight"]
        rows, cols = shard.entries[n].shape
        return (int(cols), int(rows) * 8) if self.method == "gptq" else (int(cols) * 8, int(rows))

    def codes_and_zeros(self, p: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes uint8 [out, in], zeros uint8 [out, groups], scales f32 [out, groups])."""
        qw, qz, sc = self._get(f"{p}.qweight"), self._get(f"{p}.qzeros"), self._get(f"{p}.scales")
        out_f, in_f = self._shape(p)
        n_groups = in_f // self.group
        if sc.shape != (n_groups, out_f) or qz.shape != (n_groups, out_f // 8):
            raise UnsupportedModelError(f"{self.src}: {p}: scales {sc.shape} / qzeros {qz.shape} do not "
                                        f"match {in_f} inputs in groups of {self.group} and {out_f} outputs")
        if self.method == "gptq":
            q = _nibbles(qw.T).reshape(out_f, in_f)                    # [out, in/8, 8] -> [out, in]
            z = _nibbles(qz).reshape(n_groups, out_f).T.astype(np.int32) + self.zero_offset
            if f"{p}.g_idx" in self._parts:
                g = self._get(f"{p}.g_idx").reshape(-1)
                if not np.array_equal(g, np.arange(in_f) // self.group):
                    raise UnsupportedModelError(
                        f"{self.src}: {p}.g_idx is not i // group_size (act-order, desc_act true): its "
                        "groups are not contiguous and cannot be carried as blocks; re-quantize with "
                        "desc_act false, or dequantize to float and use `edgert compress`")
        else:
            inv = np.argsort(AWQ_ORDER)
            q = _nibbles(qw)[..., inv].reshape(in_f, out_f).T           # word c, nibble k -> out 8c+ORDER[k]
            z = _nibbles(qz)[..., inv].reshape(n_groups, out_f).T.astype(np.int32)
        if z.max() > 15:
            raise UnsupportedModelError(f"{self.src}: {p}: zero point above 15 (a v1 GPTQ zero of 15 "
                                        "overflows); this checkpoint cannot be carried exactly")
        return q, z.astype(np.uint8), sc.T.copy()

    def dequantized(self, p: str) -> np.ndarray:
        """The checkpoint's own values, w = scale · (q − z), float32 [out, in] (the tests' oracle
        is written separately from the format definition)."""
        q, z, s = self.codes_and_zeros(p)
        g = np.arange(q.shape[1]) // self.group
        return (s[:, g] * (q.astype(np.float32) - z[:, g].astype(np.float32))).astype(np.float32)

    def dtype_of(self, name: str) -> dtypes.DType:
        if name not in self._types:
            self._types[name] = self._encode(name)[0]
        return self._types[name]

    def raw(self, name: str) -> np.ndarray:
        return self._encode(name)[1]

    def _encode(self, name: str) -> tuple[dtypes.DType, np.ndarray]:
        p = self._prefix_of[name]
        q, z, s = self.codes_and_zeros(p)
        out_f, in_f = q.shape
        per = self.group // 32
        zb = np.repeat(z, per, axis=1)                     # per 32-column block
        sb = np.repeat(s, per, axis=1).astype(np.float16)  # exact: the checkpoint's f16 scales
        qb = q.reshape(out_f, in_f // 32, 32)
        if np.all(zb == 8):
            out = np.empty((out_f, in_f // 32, 18), np.uint8)
            out[..., 0:2] = sb.view(np.uint8).reshape(out_f, -1, 2)
            out[..., 2:] = qb[..., :16] | (qb[..., 16:] << 4)
            self.stats["exact"] += 1
            return dtypes.Q4_0, out.reshape(-1)
        m_exact = -(sb.astype(np.float64) * zb)
        m16 = m_exact.astype(np.float16)
        off_err = np.abs(m16.astype(np.float64) - m_exact)
        if self.exact and off_err.max() > 0:
            out = np.empty((out_f, in_f // 32, 34), np.uint8)
            out[..., 0:2] = sb.view(np.uint8).reshape(out_f, -1, 2)
            out[..., 2:] = (qb.astype(np.int16) - zb[..., None]).astype(np.int8).view(np.uint8)
            self.stats["exact"] += 1
            return dtypes.Q8_0, out.reshape(-1)
        out = np.empty((out_f, in_f // 32, 20), np.uint8)
        out[..., 0:2] = sb.view(np.uint8).reshape(out_f, -1, 2)
        out[..., 2:4] = m16.view(np.uint8).reshape(out_f, -1, 2)
        out[..., 4:] = qb[..., :16] | (qb[..., 16:] << 4)
        if off_err.max() > 0:
            self.stats["rounded_offsets"] += 1
            self.stats["max_offset_error"] = max(self.stats["max_offset_error"], float(off_err.max()))
        else:
            self.stats["exact"] += 1
        return dtypes.Q4_1, out.reshape(-1)
