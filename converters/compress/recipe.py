"""A compression recipe: what each stage does, from a TOML file (`--recipe`), command-line flags,
or both (flags override the file). Everything is checked here, before any work.

    [calib]                      # --calib, --calib-seqs, --seq-len
    source = "self:128"          # or a UTF-8 text file
    seq_len = 256
    heldout = 8                  # held-back sequences for the quality report
    [prune]                      # --prune ffn=0.25,heads=0.1,layers=0,importance=act
    ffn = 0.25
    heads = 0.0
    layers = 0
    importance = "act"           # or "taylor"
    [distill]                    # --distill steps=N,lr=2e-4,T=2,hidden=0,batch=4,schedule=const  --time-budget 3600
    steps = 200
    time_budget = 3600
    [quant]                      # --quant q4_0:gptq[,act_order=1,asym=1,refit=0,damp=0.01]  --target-bpw 4.8
    type = "q4_0"                # q3_k, q3_0, q4_0, q4_1, q8_0
    method = "gptq"              # rtn | gptq | awq | awq+gptq
    act_order = 1                # 1 (default): GPTQ columns by decreasing Hessian diagonal (static groups)
    damp = 0.01                  # GPTQ damping, a fraction of the mean Hessian diagonal
    refit = 0                    # rounds of least-squares scale refit after GPTQ (default 0: none)
    asym = 1                     # 1 (default): aim at the float model's layer outputs (asymmetric calibration)
    act_mb = 256                 # calibration activations kept in memory up to this many MB; beyond, an
                                 # unlinked temporary file beside the output (same results, less RSS)
    target_bpw = 4.8
    embed_type = "q8_0"          # the embedding/output matrix (default q8_0 below 8 bits)
    [tune]                       # --tune blocks=E,block_lr=2e-2,steps=N,time=20m,lr=1e-3,batch=4,schedule=const (after --quant)
    blocks = 0                   # epochs of block-wise code training first (blockwise.py; 0: none)
    steps = 300                  # scale tuning: KD that trains only the blocks' f16 scales and the norms
    time_budget = 1200
    [options]
    seed = 0
    threads = 2
    allow_quantized_source = false
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgert.errors import InvalidArgumentError

from .distill import DistillSpec
from .prune import PruneSpec
from .quantize_stage import QuantSpec
from .tune import TuneSpec


@dataclass
class CalibSpec:
    source: str = "self"
    n: Optional[int] = None      # sequences (default 128; `self:N` sets it too)
    seq_len: int = 256
    heldout: int = 8

    def validate(self) -> None:
        if self.seq_len < 8:
            raise InvalidArgumentError(f"--seq-len {self.seq_len}: use at least 8 tokens")
        if self.n is not None and self.n < 1:
            raise InvalidArgumentError(f"--calib-seqs {self.n}: must be >= 1")
        if self.heldout < 1:
            raise InvalidArgumentError(f"heldout {self.heldout}: must be >= 1")


@dataclass
class Recipe:
    calib: CalibSpec = field(default_factory=CalibSpec)
    prune: PruneSpec = field(default_factory=PruneSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    quant: Optional[QuantSpec] = field(default_factory=QuantSpec)
    tune: TuneSpec = field(default_factory=TuneSpec)
    seed: int = 0
    threads: int = 0            # 0: torch's default
    allow_quantized_source: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"calib": dataclasses.asdict(self.calib),
                "prune": dataclasses.asdict(self.prune) if self.prune.active else None,
                "distill": dataclasses.asdict(self.distill) if self.distill.active else None,
                "quant": dataclasses.asdict(self.quant) if self.quant else None,
                "tune": dataclasses.asdict(self.tune) if self.tune.active else None,
                "seed": self.seed}


def _number(key: str, v: str, kind=float):
    try:
        return kind(v)
    except ValueError:
        raise InvalidArgumentError(f"{key}={v!r} is not a {'number' if kind is float else 'whole number'}") from None


def _kv(flag: str, text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise InvalidArgumentError(f"{flag} {text!r}: write key=value pairs separated by commas")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _set(obj: Any, section: str, values: dict[str, Any], aliases: dict[str, str] | None = None) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in values.items():
        k = (aliases or {}).get(k, k)
        if k not in names:
            raise InvalidArgumentError(f"[{section}] unknown key {k!r}; known: {', '.join(sorted(names))}")
        typ = names[k].type
        if isinstance(v, str) and ("float" in str(typ) or "int" in str(typ)):
            v = _number(k, v, int if "int" in str(typ) and "float" not in str(typ) else float)
        setattr(obj, k, v)


_TUNE_ALIASES = {"T": "temperature", "time": "time_budget"}


def parse_duration(text: str | float | int) -> float:
    """'3600', '90s', '45m', '1.5h' -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        return float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise InvalidArgumentError(f"--time-budget {text!r}: give seconds, or a number with s, m or h") from None


def parse_quant(text: str) -> Optional[QuantSpec]:
    """'TYPE[:METHOD][,key=value...]', e.g. 'q4_0:gptq,act_order=1,damp=0.02,refit=1,asym=1';
    'none' keeps floats."""
    if text in ("none", "float", ""):
        return None
    head, _, rest = text.partition(",")
    t, _, method = head.partition(":")
    spec = QuantSpec(type=t, method=method or "gptq")
    if rest:
        opts = _kv("--quant", rest)
        bad = set(opts) - {"damp", "act_order", "chunk", "refit", "asym", "act_mb"}
        if bad:
            raise InvalidArgumentError(f"--quant {text!r}: unknown options {sorted(bad)}; "
                                       "known: act_mb, act_order, asym, chunk, damp, refit")
        _set(spec, "--quant", opts)
    return spec


def load_toml(path: str | Path) -> dict[str, Any]:
    import tomllib
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--recipe {p}: no such file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgumentError(f"--recipe {p}: not valid TOML ({e})") from None


def build(toml: dict[str, Any] | None = None, *, calib: str | None = None, calib_seqs: int | None = None,
          seq_len: int | None = None, prune: str | None = None, distill: str | None = None,
          time_budget: str | None = None, quant: str | None = None, target_bpw: float | None = None,
          embed_type: str | None = None, tune: str | None = None,
          seed: int | None = None, threads: int | None = None,
          allow_quantized_source: bool | None = None) -> Recipe:
    r = Recipe()
    toml = dict(toml or {})
    unknown = set(toml) - {"calib", "prune", "distill", "quant", "tune", "options"}
    if unknown:
        raise InvalidArgumentError(f"recipe: unknown sections {sorted(unknown)}; "
                                   "known: calib, prune, distill, quant, tune, options")
    _set(r.calib, "calib", toml.get("calib", {}))
    _set(r.prune, "prune", toml.get("prune", {}))
    _set(r.distill, "distill", toml.get("distill", {}), {"T": "temperature", "hidden": "hidden_weight"})
    if "time_budget" in toml.get("distill", {}):
        r.distill.time_budget = parse_duration(toml["distill"]["time_budget"])
    _set(r.tune, "tune", toml.get("tune", {}), _TUNE_ALIASES)
    if "time_budget" in toml.get("tune", {}):
        r.tune.time_budget = parse_duration(toml["tune"]["time_budget"])
    if "quant" in toml:
        q = dict(toml["quant"])
        if q.get("type") in ("none", "float"):
            r.quant = None
        else:
            _set(r.quant, "quant", q)
    opts = toml.get("options", {})
    for k, v in opts.items():
        if k not in ("seed", "threads", "allow_quantized_source"):
            raise InvalidArgumentError(f"[options] unknown key {k!r}; known: seed, threads, allow_quantized_source")
        setattr(r, k, v)
    # Command-line flags override the file.
    if calib is not None:
        r.calib.source = calib
    if calib_seqs is not None:
        r.calib.n = calib_seqs
    if seq_len is not None:
        r.calib.seq_len = seq_len
    if prune is not None:
        _set(r.prune, "--prune", _kv("--prune", prune))
    if distill is not None:
        _set(r.distill, "--distill", _kv("--distill", distill), {"T": "temperature", "hidden": "hidden_weight"})
    if time_budget is not None:
        r.distill.time_budget = parse_duration(time_budget)
    if quant is not None:
        r.quant = parse_quant(quant)
    if target_bpw is not None:
        if r.quant is None:
            raise InvalidArgumentError("--target-bpw needs a --quant type")
        r.quant.target_bpw = float(target_bpw)
    if embed_type is not None:
        if r.quant is None:
            raise InvalidArgumentError("--embed-type needs a --quant type")
        r.quant.embed_type = embed_type
    if tune is not None:
        kv = _kv("--tune", tune)
        dur = kv.pop("time", None)
        _set(r.tune, "--tune", kv, _TUNE_ALIASES)
        if dur is not None:
            r.tune.time_budget = parse_duration(dur)
    if seed is not None:
        r.seed = seed
    if threads is not None:
        r.threads = threads
    if allow_quantized_source is not None:
        r.allow_quantized_source = allow_quantized_source
    r.distill.seed = r.seed
    r.tune.seed = r.seed
    r.calib.validate()
    r.distill.validate()
    r.tune.validate()
    if r.tune.active and r.quant is None:
        raise InvalidArgumentError("--tune trains a quantized model's scales: it needs a --quant type")
    if r.quant is not None:
        r.quant.validate()
    return r
