"""The calibrated quantization stage: streams the calibration activations through the model one
block at a time and quantizes each linear against the inputs it actually sees, in the order the
data flows (Q/K/V, O, gate/up, down), each on activations that already went through the
quantized linears before it (GPTQ's "true sequential" order).

Methods (`--quant TYPE:METHOD`):
  rtn       round to nearest: byte for byte what `edgert convert --quantize TYPE` writes
  gptq      GPTQ error compensation (gptq.py) on the format's blocks
  awq       AWQ scaling (awq.py), then each block's range fitted against the activations
  awq+gptq  AWQ scaling, then GPTQ

GPTQ options (gptq and awq+gptq; `--quant q4_0:gptq,act_order=0,asym=0,refit=1`; defaults
act_order=1, asym=1, refit=0): act_order=1 (columns by decreasing Hessian diagonal, static
groups); refit=N (N rounds of least-squares group scales for the chosen codes, then GPTQ on
those scales; gptq.refit_scales); asym=1 (aim each linear at the float model's output on the
float model's input, not at its own output on the quantized model's input: a second, float
stream of activations runs beside the quantized one, and the error the earlier quantized layers
left in the input is compensated too; gptq.asymmetric_target).

Mixed precision (`--target-bpw B`): every block matrix starts at TYPE; a sensitivity pass measures,
on the calibration activations, each matrix's whole output error at every candidate type (round
to nearest), and, greedily, the move of one matrix to any costlier type that cuts the most error
per extra byte is made, until no move fits under B bits per weight (over the blocks' matrices,
scales included).

Memory (streaming): the calibration activations at one block boundary, [n_seq, T, hidden] f32
(twice with asym=1; beyond `act_mb` MB in all they live in an unlinked temporary file instead, read
and written a chunk at a time, the same values: _Acts), the inputs of one linear for one chunk of sequences (recomputed, not kept),
one input group's Hessian (in × in f64, and the cross term with asym=1), and one block's float
weights: a block's matrices are made resident when it starts (decoded from the source when the
model's weights are lazy, model_desc.LazyWeights) and, once the block is done, read only as their
encoded bytes (ModelDesc.settle).
"""
from __future__ import annotations

import sys
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from edgert.errors import InvalidArgumentError

from .. import quantize as codec
from ..dtypes import BY_NAME, F16, DType
from ..llama_tensor_names import name as reg
from ..recipe import K_FALLBACK, k_fallback
from . import awq, forward
from .gptq import Hessian, asymmetric_target, gptq_quantize, output_error_h
from .grids import GRIDS, grid_for, quantize_matrix
from .model_desc import ModelDesc

METHODS = ("rtn", "gptq", "awq", "awq+gptq")
EMBED_NAMES = ("token_embd.weight", "output.weight")
# The linears of one block, grouped by the input they share.
INPUT_GROUPS = (("ATTN_Q", ("ATTN_Q", "ATTN_K", "ATTN_V")), ("ATTN_OUTPUT", ("ATTN_OUTPUT",)),
                ("FFN_GATE", ("FFN_GATE", "FFN_UP")), ("FFN_DOWN", ("FFN_DOWN",)))


def quant_types() -> list[str]:
    """Block types calibrated quantization can target, cheapest first."""
    return sorted(GRIDS, key=lambda t: BY_NAME[t].block_bytes / BY_NAME[t].block_size)


def bits_per_weight(t: str) -> float:
    d = BY_NAME[t]
    return 8.0 * d.block_bytes / d.block_size


@dataclass
class QuantSpec:
    type: str = "q4_0"
    method: str = "gptq"
    target_bpw: Optional[float] = None
    damp: float = 0.01
    # Defaults: what measured best on SmolLM2-135M q4_0 (benchmarks/results/compress-sweep-2026-12-03.md):
    # act_order and asym together cut RTN's wikitext PPL gap by 52% and its KLD by 68% (self:128),
    # plain GPTQ 21% / 40%; refit lowered the calibration layer error but not the wikitext KLD.
    act_order: int = 1                 # 1: GPTQ in decreasing Hessian-diagonal order, static groups
    refit: int = 0                     # GPTQ scale refit rounds (gptq.refit_scales)
    asym: int = 1                      # 1: aim at the float model's layer outputs (gptq.asymmetric_target)
    embed_type: Optional[str] = None   # default: q8_0 under types of < 8 bits, as the converter does
                                       # (rounded to nearest: it is looked up, and multiplied last)
    chunk: int = 8                     # calibration sequences per forward chunk
    act_mb: int = 256                  # block-boundary activations (both streams) kept in memory up to
                                       # this many MB; beyond, in a temporary file (_Acts): same values

    def validate(self) -> None:
        if self.type not in GRIDS:
            raise InvalidArgumentError(f"--quant type {self.type!r}: calibrated quantization targets "
                                       f"{', '.join(quant_types())}")
        if self.method not in METHODS:
            raise InvalidArgumentError(f"--quant method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.embed_type is not None and self.embed_type not in BY_NAME:
            raise InvalidArgumentError(f"embed_type {self.embed_type!r}: one of {', '.join(BY_NAME)}")
        if self.act_order not in (0, 1):
            raise InvalidArgumentError(f"act_order={self.act_order}: 0 or 1")
        if self.asym not in (0, 1):
            raise InvalidArgumentError(f"asym={self.asym}: 0 or 1")
        if not 0 <= self.refit <= 8:
            raise InvalidArgumentError(f"refit={self.refit}: a number of rounds in 0..8")
        if self.act_mb < 0:
            raise InvalidArgumentError(f"act_mb={self.act_mb}: megabytes of activations to keep in memory, >= 0")
        if self.chunk < 1:
            raise InvalidArgumentError(f"chunk={self.chunk}: calibration sequences per forward chunk, >= 1")
        if not 0 < self.damp < 1:
            raise InvalidArgumentError(f"damp {self.damp}: a fraction of the mean Hessian diagonal in (0, 1)")


@dataclass
class QuantResult:
    types: dict[str, str] = field(default_factory=dict)    # matrix -> type written
    alphas: dict[str, float] = field(default_factory=dict)  # AWQ exponent per input group
    errors: dict[str, float] = field(default_factory=dict)  # output MSE on calibration inputs


def effective_type(t: str, cols: int) -> DType:
    """What a matrix with `cols` columns is written in under type t: t, its fallback for rows that
    are not whole 256-column super-blocks (q3_k -> edgert's q3_0, as the converters' `q3_k`
    recipe; the other super-block types as llama.cpp and the converters' recipes do: q4_k -> q5_0,
    q5_k -> q5_1, q6_k -> q8_0, iq4_xs -> iq4_nl), or f16 when no block fits (rows that are not
    whole 32-blocks)."""
    want = BY_NAME[t]
    for dt in (want, k_fallback(want, all_3bit=True) if want in K_FALLBACK else None):
        if dt is not None and cols % dt.block_size == 0:
            return dt
    return F16


def block_bytes_at(desc: ModelDesc, types: dict[str, str]) -> tuple[int, int]:
    """(bytes, params) of the block matrices under `types` (f16 where the rows are not whole blocks)."""
    nbytes = params = 0
    for n in desc.block_matrix_names():
        shape = desc.shape(n)
        nbytes += effective_type(types[n], shape[-1]).nbytes(shape)
        params += int(np.prod(shape))
    return nbytes, params


def check_target(desc: ModelDesc, spec: QuantSpec) -> None:
    """A target no mixture meets is an error before any work."""
    if spec.target_bpw is None:
        return
    low = block_bytes_at(desc, {n: spec.type for n in desc.block_matrix_names()})
    bpw = 8.0 * low[0] / max(low[1], 1)
    if spec.target_bpw < bpw - 1e-9:
        raise InvalidArgumentError(
            f"--target-bpw {spec.target_bpw}: no mixture meets it; every block matrix at {spec.type} "
            f"(the cheapest allowed) already takes {bpw:.3f} bits per weight. Choose a target >= "
            f"{bpw:.3f} or a cheaper --quant type")


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="layer", desc=desc, file=sys.stderr)


class _Acts:
    """The calibration activations at a block boundary, [n_seq, T, H] f32, read and written a chunk
    of sequences (a slice) at a time: a tensor in memory, or, given `spill` (a directory, or "" for
    the system's temporary one), an unlinked temporary file there, so the process holds one
    chunk of them at a time and nothing is left behind if it dies. Both hold the same f32 values."""

    def __init__(self, shape: tuple[int, int, int], spill: Optional[str]):
        self.shape = shape
        self._row = shape[1] * shape[2]  # floats per sequence
        self._mem: Optional[torch.Tensor] = None
        self._file = None
        if spill is None:
            self._mem = torch.empty(shape, dtype=torch.float32)
        else:
            import tempfile
            self._file = tempfile.TemporaryFile(dir=spill or None, prefix=".edgert-acts-")
            self._file.truncate(shape[0] * self._row * 4)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def __getitem__(self, sl: slice) -> torch.Tensor:
        if self._mem is not None:
            return self._mem[sl]
        n = sl.stop - sl.start
        out = torch.empty((n, self.shape[1], self.shape[2]), dtype=torch.float32)
        buf = memoryview(out.numpy()).cast("B")
        self._file.seek(sl.start * self._row * 4)
        if self._file.readinto(buf) != len(buf):
            raise OSError("calibration activations: short read from the temporary file")
        return out

    def __setitem__(self, sl: slice, value: torch.Tensor) -> None:
        if self._mem is not None:
            self._mem[sl] = value
            return
        a = np.ascontiguousarray(value.detach().to(torch.float32).numpy())
        assert a.shape == (sl.stop - sl.start, self.shape[1], self.shape[2])
        self._file.seek(sl.start * self._row * 4)
        self._file.write(memoryview(a).cast("B"))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = None


def act_bytes(desc: ModelDesc, ids: torch.Tensor, streams: int) -> int:
    """Bytes of `streams` copies of the block-boundary activations, [n_seq, T, hidden] f32."""
    return streams * ids.numel() * int(desc.hparams["hidden_size"]) * 4


def act_spill(spec: "QuantSpec", nbytes: int, spill_dir: Optional[str]) -> Optional[str]:
    """Where nbytes of block-boundary activations go: None (memory) while they fit in
    spec.act_mb MB, else spill_dir ("" for the system's temporary directory)."""
    if nbytes <= spec.act_mb * 2 ** 20:
        return None
    return "" if spill_dir is None else str(spill_dir)


class _Stream:
    """The calibration activations at the current block boundary, [n_seq, T, H] (the only
    activations held), and the inputs of the block's linears, computed from them chunk by chunk
    when asked for, with the weights as they are then (so with the linears before it already
    quantized). Once O is final, x becomes the residual after attention in place (`x + O·att`);
    `advance` then adds the FFN, so x is the block's output. Recomputing a chunk runs the same
    operations on the same operands, so it gives the same values a kept copy would."""

    def __init__(self, desc: ModelDesc, ids: torch.Tensor, chunk: int, spill: Optional[str] = None):
        self.desc, self.chunk = desc, chunk
        self.hp = desc.hparams
        self.eps = float(self.hp["rms_norm_eps"])
        self.freqs = forward.inv_freq(desc.weights, desc.hparams)
        self.x = _Acts((int(ids.shape[0]), int(ids.shape[1]), int(desc.hparams["hidden_size"])), spill)
        with torch.no_grad():
            for sl in self._chunks():
                self.x[sl] = forward.embed(desc.weights, ids[sl])
        self._after_att = False  # x holds the residual after attention (O applied)

    def close(self) -> None:
        self.x.close()

    def _chunks(self):
        return _chunks(self.x.shape[0], self.chunk)

    def _attention(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The block's attention half without the output projection (O's input) for one chunk
        of x (read once by the caller: with spilled activations each read is file I/O)."""
        heads: list = []
        forward.attention_block(self.desc.weights, self.hp, layer, x, 0, self.freqs, head_out=heads)
        return heads[0].reshape(x.shape[0], x.shape[1], -1)

    def _ffn_norm(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return forward.rms_norm(x, self.desc.weights[reg("FFN_NORM", layer)], self.eps)

    def _gate_up(self, layer: int, n: torch.Tensor) -> torch.Tensor:
        """The FFN activation (down's input) from the normed residual n."""
        W = self.desc.weights
        return torch.nn.functional.silu(n @ W[reg("FFN_GATE", layer)].T) * (n @ W[reg("FFN_UP", layer)].T)

    def inputs(self, layer: int, which: str, keep: bool = True):
        """Yield the input of `which` (an INPUT_GROUPS key) chunk by chunk. (keep: accepted for
        the callers' sake; nothing is kept but x.)"""
        W = self.desc.weights
        if which == "ATTN_Q":
            assert not self._after_att
            for sl in self._chunks():
                yield forward.rms_norm(self.x[sl], W[reg("ATTN_NORM", layer)], self.eps)
        elif which == "ATTN_OUTPUT":
            assert not self._after_att
            for sl in self._chunks():
                yield self._attention(layer, self.x[sl])
        elif which == "FFN_GATE":
            self._apply_attention(layer)
            for sl in self._chunks():
                yield self._ffn_norm(layer, self.x[sl])
        else:
            self._apply_attention(layer)
            for sl in self._chunks():
                yield self._gate_up(layer, self._ffn_norm(layer, self.x[sl]))

    def _apply_attention(self, layer: int) -> None:
        """x <- x + O·attention, with O as it is now (asked for once O is final)."""
        if self._after_att:
            return
        wo = self.desc.weights[reg("ATTN_OUTPUT", layer)]
        for sl in self._chunks():
            x = self.x[sl]
            self.x[sl] = x + self._attention(layer, x) @ wo.T
        self._after_att = True

    def walk(self, layer: int):
        """Yield, chunk by chunk, the inputs of all four INPUT_GROUPS ({which: tensor}) in one
        pass, leaving x the block's output: for a caller that changes no weight of the block
        while walking (the sensitivity pass). The same operations on the same operands as
        inputs() for each group followed by advance(), so the same values; each chunk's attention
        and FFN activation are computed once instead of twice."""
        assert not self._after_att
        W = self.desc.weights
        wo, wd = W[reg("ATTN_OUTPUT", layer)], W[reg("FFN_DOWN", layer)]
        for sl in self._chunks():
            x = self.x[sl]
            att = self._attention(layer, x)
            got = {"ATTN_Q": forward.rms_norm(x, W[reg("ATTN_NORM", layer)], self.eps), "ATTN_OUTPUT": att}
            x = x + att @ wo.T
            got["FFN_GATE"] = n = self._ffn_norm(layer, x)
            got["FFN_DOWN"] = act = self._gate_up(layer, n)
            yield got
            self.x[sl] = x + act @ wd.T

    def advance(self, layer: int) -> None:
        """x <- the block's output."""
        self._apply_attention(layer)
        wd = self.desc.weights[reg("FFN_DOWN", layer)]
        for sl in self._chunks():
            x = self.x[sl]
            self.x[sl] = x + self._gate_up(layer, self._ffn_norm(layer, x)) @ wd.T
        self._after_att = False


class _FloatView:
    """What the float model computes with, for the asymmetric target's second stream: each
    matrix as it was just before it was quantized (`saved`, AWQ folds included, so both streams'
    inputs are in the same basis), everything else (norms, matrices not yet quantized) as desc
    has it."""

    def __init__(self, desc: ModelDesc, saved: dict):
        self.weights = ChainMap(saved, desc.weights)
        self.hparams = desc.hparams


def _collect(stream: _Stream, layer: int, which: str, n_sample: int, gen: torch.Generator, keep: bool = True,
             fstream: Optional[_Stream] = None):
    """Hessian of the input (with the cross term against the float stream's input when given),
    and a random sample of its rows (for AWQ's search)."""
    hess = None
    sample = []
    floats = fstream.inputs(layer, which, keep) if fstream is not None else None
    for x in stream.inputs(layer, which, keep):
        x2 = x.reshape(-1, x.shape[-1])
        if hess is None:
            hess = Hessian(x2.shape[1])
        hess.add(x2, None if floats is None else next(floats))
        k = min(x2.shape[0], max(n_sample // max(stream.x.shape[0] // stream.chunk, 1), 16))
        sample.append(x2[torch.randperm(x2.shape[0], generator=gen)[:k]])
    return hess, torch.cat(sample)


def _fold_scales(desc: ModelDesc, layer: int, which: str, s: torch.Tensor) -> None:
    """Scale the group's input channels by s and undo it where the input is produced."""
    W = desc.weights
    members = dict(INPUT_GROUPS)[which]
    for id in members:
        W[reg(id, layer)] = W[reg(id, layer)] * s[None, :]
    if which == "ATTN_Q":
        W[reg("ATTN_NORM", layer)] = W[reg("ATTN_NORM", layer)] / s
    elif which == "FFN_GATE":
        W[reg("FFN_NORM", layer)] = W[reg("FFN_NORM", layer)] / s
    elif which == "FFN_DOWN":
        W[reg("FFN_UP", layer)] = W[reg("FFN_UP", layer)] / s[:, None]
    else:
        raise AssertionError(which)


def _awq(desc: ModelDesc, layer: int, which: str, sample: torch.Tensor, types: dict[str, str],
         result: QuantResult) -> torch.Tensor:
    members = dict(INPUT_GROUPS)[which]
    Ws = [desc.weights[reg(id, layer)] for id in members]
    eff = effective_type(types[reg(members[0], layer)], Ws[0].shape[1])
    if not eff.is_block:  # written as f16 (rows not whole blocks): nothing to protect
        return torch.ones(Ws[0].shape[1])
    grid = grid_for(eff.name, search=False)
    s, alpha, _ = awq.search_scales(Ws, sample, grid)
    result.alphas[f"blk.{layer}.{which.lower()}"] = alpha
    if alpha > 0:
        _fold_scales(desc, layer, which, s)
    else:
        s = torch.ones_like(s)
    return s


ROWS_PER_ENCODE = 2048  # rows encoded at a time: the codec's temporaries are several times its input


def _round_to_nearest(W: torch.Tensor, dtype: DType):
    """(values, bytes) of W rounded to nearest in dtype, a slice of rows at a time (every format's
    blocks lie within a row, so the bytes are those of encoding W whole; a 49152-row embedding
    would otherwise take several float copies of itself at once)."""
    rows = W.shape[0]
    a = W.numpy()
    raws, values = [], torch.empty(W.shape, dtype=torch.float32)
    for r in range(0, rows, ROWS_PER_ENCODE):
        part = a[r:r + ROWS_PER_ENCODE]
        raw = np.asarray(codec.encode(part, dtype)).reshape(-1).view(np.uint8)
        values[r:r + part.shape[0]] = torch.from_numpy(codec.decode(raw, dtype, tuple(part.shape)).copy())
        raws.append(raw)
    return values, np.concatenate(raws)


def _quantize_one(W: torch.Tensor, t: str, method: str, H: Optional[torch.Tensor], damp: float,
                  act_order: bool = False, refit: int = 0):
    """(values, bytes, dtype) of one matrix."""
    dtype = effective_type(t, W.shape[1])
    t = dtype.name
    if not dtype.is_block or method == "rtn" or H is None:
        values, raw = _round_to_nearest(W, dtype)
        return values, raw, dtype
    if method in ("gptq", "awq+gptq"):
        wq, raw = gptq_quantize(W, H, grid_for(t), damp=damp, act_order=act_order, refit=refit)
        return wq, raw, dtype
    wq, raw = quantize_matrix(W, grid_for(t), importance=torch.diag(H).float())  # awq: fitted ranges
    return wq, raw, dtype


def _block_matrices(layer: int) -> list[str]:
    return [reg(id, layer) for _, members in INPUT_GROUPS for id in members]


def sensitivity_types(desc: ModelDesc, ids: torch.Tensor, spec: QuantSpec, progress: bool,
                      spill_dir: Optional[str] = None) -> dict[str, str]:
    """The per-matrix types of --target-bpw (module docstring)."""
    names = desc.block_matrix_names()
    types = {n: spec.type for n in names}
    if spec.target_bpw is None:
        return types
    ladder = [t for t in quant_types() if bits_per_weight(t) >= bits_per_weight(spec.type)]
    err: dict[tuple[str, str], float] = {}
    stream = _Stream(desc, ids, spec.chunk, act_spill(spec, act_bytes(desc, ids, 1), spill_dir))
    bar = _bar(desc.n_layers, progress, "sensitivity")
    with torch.no_grad():
        for l in range(desc.n_layers):
            desc.load(_block_matrices(l))
            hess: dict[str, Hessian] = {}
            for inputs in stream.walk(l):  # no weight changes here: one pass for all four inputs
                for which, x in inputs.items():
                    if which not in hess:
                        hess[which] = Hessian(x.shape[-1])
                    hess[which].add(x)
            for which, members in INPUT_GROUPS:
                H = hess.pop(which).matrix()
                for id in members:
                    n = reg(id, l)
                    rows = desc.shape(n)[0]
                    for t in ladder:
                        wq, _, _ = _quantize_one(desc.weights[n], t, "rtn", None, spec.damp)
                        # the whole matrix's output error (output_error_h is per output row): a
                        # move is worth its error cut over its extra bytes, both for all the rows
                        err[(n, t)] = output_error_h(desc.weights[n], wq, H) * rows
            desc.release(_block_matrices(l))
            if bar is not None:
                bar.update(1)
    stream.close()
    if bar is not None:
        bar.close()
    budget = spec.target_bpw
    nbytes, params = block_bytes_at(desc, types)
    limit = budget * params / 8.0
    while True:
        best = None
        for n in names:
            here = block_bytes_at_one(desc, n, types[n])
            # Any type up that costs more bytes for this matrix (q3_k and its q3_0 fallback can
            # be the same thing), not only the next: a q3_k ffn_down's next step, q3_0, buys
            # little, q4_0 much more.
            for up in ladder[ladder.index(types[n]) + 1:]:
                extra = block_bytes_at_one(desc, n, up) - here
                gain = err[(n, types[n])] - err[(n, up)]
                if extra <= 0 or gain <= 0 or nbytes + extra > limit:
                    continue
                score = gain / extra
                if best is None or score > best[0]:
                    best = (score, n, up, extra)
        if best is None:
            break
        _, n, up, extra = best
        types[n] = up
        nbytes += extra
    return types


def block_bytes_at_one(desc: ModelDesc, n: str, t: str) -> int:
    shape = desc.shape(n)
    return effective_type(t, shape[-1]).nbytes(shape)


@torch.no_grad()
def quantize_model(desc: ModelDesc, ids: torch.Tensor, spec: QuantSpec, *, progress: bool = False,
                   seed: int = 0, spill_dir: Optional[str] = None) -> QuantResult:
    """Quantize desc in place (weights replaced by their quantized values, bytes in desc.encoded).
    Activations beyond spec.act_mb go to an unlinked temporary file in spill_dir (None: the
    system's temporary directory)."""
    spec.validate()
    check_target(desc, spec)
    result = QuantResult()
    types = sensitivity_types(desc, ids, spec, progress, spill_dir)
    result.types.update(types)
    embed_t = spec.embed_type or ("q8_0" if bits_per_weight(spec.type) < 8 else spec.type)
    saved: dict[str, torch.Tensor] = {}  # float copies for the asymmetric target's float stream
    asym = bool(spec.asym) and spec.method in ("gptq", "awq+gptq")
    embeds = [n for n in EMBED_NAMES if n in desc.weights]
    for n in embeds:
        W = desc.weights[n]
        if asym:
            saved[n] = W
        wq, raw, dt = _quantize_one(W, embed_t, "rtn", None, spec.damp)
        if dt.name != embed_t and progress:
            print(f"note: {n} has {W.shape[1]} columns, not whole {embed_t} blocks: written as {dt.name}",
                  file=sys.stderr)
        desc.weights[n], desc.encoded[n] = wq, (dt, raw)
        result.types[n] = dt.name
        del W, wq
    old_threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(seed)
    nbytes = act_bytes(desc, ids, 2 if asym else 1)
    spill = act_spill(spec, nbytes, spill_dir)
    if spill is not None and progress:
        print(f"note: calibration activations ({nbytes / 2 ** 20:.0f} MB) "
              f"exceed act_mb={spec.act_mb}: kept in a temporary file in {spill or 'the temporary directory'}",
              file=sys.stderr)
    stream = _Stream(desc, ids, spec.chunk, spill)
    fstream = _Stream(_FloatView(desc, saved), ids, spec.chunk, spill) if asym else None
    # The embeddings were only needed for the streams' first activations: from here on they
    # read as their encoded bytes (decoded when asked for), and the float ones are gone.
    for n in embeds:
        saved.pop(n, None)
        desc.settle(n)
    bar = _bar(desc.n_layers, progress, f"quantizing ({spec.type}:{spec.method})")
    try:
        for l in range(desc.n_layers):
            block = _block_matrices(l)
            desc.load(block)  # this block's floats, decoded once (lazy sources)
            for which, members in INPUT_GROUPS:
                awq_here = spec.method.startswith("awq") and which in ("ATTN_Q", "FFN_GATE")
                if awq_here and which == "FFN_GATE":
                    # The down projection's scales fold into the up rows, so they are searched
                    # (on the float gate/up's output) before gate/up are quantized.
                    _, sample = _collect(stream, l, "FFN_DOWN", 4096, gen, keep=False)
                    _awq(desc, l, "FFN_DOWN", sample, types, result)
                hess, sample = _collect(stream, l, which, 4096, gen, fstream=fstream)
                H, D = hess.matrix(), hess.cross()
                if awq_here:
                    s = _awq(desc, l, which, sample, types, result)
                    H = H / s.double()[:, None] / s.double()[None, :]
                    if D is not None:
                        D = D / s.double()[:, None] / s.double()[None, :]
                # GPTQ's column loop is many small operations: one thread each wastes less.
                torch.set_num_threads(1)
                for id in members:
                    n = reg(id, l)
                    W = desc.weights[n]
                    target = W
                    if fstream is not None:
                        saved[n] = W
                        target = asymmetric_target(W, H, D, spec.damp)
                    wq, raw, dt = _quantize_one(target, types[n], spec.method, H, spec.damp, bool(spec.act_order),
                                                  spec.refit)
                    result.errors[n] = output_error_h(W, wq, H)
                    result.types[n] = dt.name
                    desc.weights[n], desc.encoded[n] = wq, (dt, raw)
                torch.set_num_threads(old_threads)
            stream.advance(l)
            if fstream is not None:
                fstream.advance(l)
            # The block is done: its float weights go; its matrices read as their encoded bytes.
            for n in block:
                saved.pop(n, None)
                desc.settle(n)
            if bar is not None:
                bar.update(1)
    finally:
        torch.set_num_threads(old_threads)
        stream.close()
        if fstream is not None:
            fstream.close()
        if bar is not None:
            bar.close()
    return result
