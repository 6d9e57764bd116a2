"""Calibration data without downloads: token sequences for the compression stages, plus held-back
sequences the stages never see, on which the quality report measures perplexity and KLD.

- `--calib FILE`: the user's own UTF-8 text, any size. The last tenth of its tokens is held back;
  training sequences are windows sampled at seeded random offsets from the rest.
- `--calib FILE.npz`: token sequences kept by an earlier run's `--save-calib` (sampling once
  serves several runs). `--calib A.npz,B.npz,...` trains on all their sequences together (e.g.
  self-sampled in parallel processes with different --seed) and holds back the first file's.
- `--calib self[:N]`: N sequences sampled from the teacher itself at temperature 1 from short,
  generic prompts (the data-free recipe of LLM-QAT, Liu et al. 2023); the held-back sequences are
  further samples from other prompts.

Never calibrate on the evaluation text (wikitext test): the benchmarks refuse to.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from edgert.errors import InvalidArgumentError

from . import forward
from .model_desc import ModelDesc

# Short and generic on purpose: the samples should cover what the model itself finds likely.
SELF_PROMPTS = ("The", "Once upon a time", "In the", "I think", "Here is", "The following",
                "It was", "A", "This is", "We", "When", "There are", "According to", "My",
                "How to", "Today")
HELDOUT_FRACTION = 0.1
SAMPLE_BATCH = 16  # sequences sampled together (KV cache of SmolLM2-135M at 256 tokens: 189 MB)


@dataclass
class CalibData:
    train: torch.Tensor    # int64 [n, seq_len]
    heldout: torch.Tensor  # int64 [m, seq_len]
    description: str       # for the provenance

    @property
    def n_tokens(self) -> int:
        return int(self.train.numel())


def parse_spec(spec: str) -> tuple[str, Optional[int]]:
    """'self', 'self:64' or a file path -> ('self', n) / (path, None)."""
    if spec == "self" or spec.startswith("self:"):
        n = None
        if ":" in spec:
            try:
                n = int(spec.split(":", 1)[1])
            except ValueError:
                raise InvalidArgumentError(f"--calib {spec!r}: write self:N with N a number of sequences") from None
            if n < 1:
                raise InvalidArgumentError(f"--calib {spec!r}: N must be >= 1")
        return "self", n
    return spec, None


def check_text_file(path: str | Path) -> str:
    """The file's text; a typed error for a missing, empty or binary file (before any work)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--calib {p}: no such file (give a UTF-8 text file, or 'self' to "
                                "sample calibration text from the teacher)")
    data = p.read_bytes()
    if not data.strip():
        raise InvalidArgumentError(f"--calib {p}: the file is empty; give text in the model's domain "
                                   "or use --calib self")
    if b"\0" in data[:1 << 20]:
        raise InvalidArgumentError(f"--calib {p}: the file is binary (NUL bytes), not text; give a "
                                   "UTF-8 text file or use --calib self")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgumentError(f"--calib {p}: not UTF-8 text ({e}); convert it to UTF-8 or use "
                                   "--calib self") from None


def _tokenizer(desc: ModelDesc):
    from edgert.tokenizer import Tokenizer
    return Tokenizer.from_metadata({"tokenizer": desc.tokenizer, "chat_template": desc.chat_template})


def from_text(desc: ModelDesc, text: str, n: int, seq_len: int, seed: int, label: str,
              n_heldout: int) -> CalibData:
    ids = torch.tensor(_tokenizer(desc).encode(text), dtype=torch.long)
    hold = max(int(len(ids) * HELDOUT_FRACTION), seq_len)
    if len(ids) < hold + seq_len:
        raise InvalidArgumentError(
            f"--calib {label}: {len(ids)} tokens are too few for sequences of {seq_len} tokens plus "
            f"a held-back tenth; give at least {hold + seq_len} tokens of text or a smaller --seq-len")
    train_ids, held_ids = ids[:-hold], ids[-hold:]
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(train_ids) - seq_len + 1, (n,), generator=g)
    train = torch.stack([train_ids[s:s + seq_len] for s in starts.tolist()])
    m = max(1, min(n_heldout, len(held_ids) // seq_len))
    heldout = held_ids[:m * seq_len].view(m, seq_len)
    return CalibData(train, heldout, f"file {label}: {n} x {seq_len} tokens sampled from "
                                     f"{len(train_ids)}, {m} x {seq_len} held back")


@torch.no_grad()
def sample_self(desc: ModelDesc, n: int, seq_len: int, seed: int, prompts: tuple[str, ...],
                progress: bool, what: str, batch: int = SAMPLE_BATCH) -> torch.Tensor:
    """n sequences of seq_len tokens sampled from the model at temperature 1 (batches of at most
    `batch` sequences, with a KV cache), spread evenly over the prompts."""
    tok = _tokenizer(desc)
    W, hp = desc.weights, desc.hparams
    g = torch.Generator().manual_seed(seed)
    per = [n // len(prompts) + (1 if i < n % len(prompts) else 0) for i in range(len(prompts))]
    out = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n * seq_len, unit="tok", desc=f"sampling {what}", file=sys.stderr)
    # Prompts of the same token length share one batch (the forward pass has no padding mask).
    groups: dict[int, list[list[int]]] = {}
    for prompt, k in zip(prompts, per):
        p = tok.encode(prompt)[:seq_len - 1] or [int(desc.tokenizer.get("bos_token_id") or 0)]
        groups.setdefault(len(p), []).extend([p] * k)
    # At most `batch` sequences at a time: the KV cache (layers x batch x seq_len x KV width, f32)
    # is the sampler's memory, so a bounded batch bounds it.
    batches = [rows[i:i + batch] for rows in groups.values() for i in range(0, len(rows), batch)]
    for rows in batches:
        k = len(rows)
        p = rows[0]
        ids = torch.tensor(rows, dtype=torch.long)
        caches = [forward.LayerCache(capacity=seq_len) for _ in range(desc.n_layers)]
        logits = forward.logits(W, hp, ids, caches=caches)[:, -1]
        seq = [ids]
        pos = ids.shape[1]
        while pos < seq_len:
            probs = torch.softmax(logits.double(), -1)
            nxt = torch.multinomial(probs, 1, generator=g)
            seq.append(nxt)
            logits = forward.logits(W, hp, nxt, pos0=pos, caches=caches)[:, -1]
            pos += 1
            if bar is not None:
                bar.update(k)
        out.append(torch.cat(seq, 1))
        if bar is not None:
            bar.update(k * len(p))
    if bar is not None:
        bar.close()
    return torch.cat(out)[:, :seq_len]


def save(calib: CalibData, path: str | Path) -> None:
    """Keep sampled calibration data for other runs (`--calib FILE.npz` reads it back)."""
    import os

    import numpy as np
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, train=calib.train.numpy(), heldout=calib.heldout.numpy(),
                     description=np.array(calib.description))
        os.replace(tmp, path)  # a failed run leaves no half-written file
    finally:
        tmp.unlink(missing_ok=True)


def load(path: str | Path) -> CalibData:
    import numpy as np
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--calib {p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as z:
            train, held, what = z["train"], z["heldout"], str(z["description"])
    except (OSError, ValueError, KeyError) as e:
        raise InvalidArgumentError(f"--calib {p}: not calibration data saved by --save-calib ({e})") from None
    if train.ndim != 2 or held.ndim != 2 or train.shape[1] != held.shape[1] or train.size == 0:
        raise InvalidArgumentError(f"--calib {p}: token arrays of the wrong shape")
    return CalibData(torch.from_numpy(train.astype(np.int64)), torch.from_numpy(held.astype(np.int64)),
                     f"{what} (from {p.name})")


def load_many(paths: list[str]) -> CalibData:
    """Several saved sets as one: every file's training sequences, the first file's held-back
    ones; a training sequence equal to a held-back one is dropped (the report must measure text
    the stages never saw)."""
    parts = [load(p) for p in paths]
    first = parts[0]
    for p, c in zip(paths[1:], parts[1:]):
        if c.train.shape[1] != first.train.shape[1]:
            raise InvalidArgumentError(f"--calib {p}: sequences of {c.train.shape[1]} tokens, "
                                       f"{paths[0]} has {first.train.shape[1]}: save them with the same --seq-len")
    train = torch.cat([c.train for c in parts])
    seen = (train[:, None, :] == first.heldout[None, :, :]).all(-1).any(-1)
    train = train[~seen]
    if train.shape[0] == 0:
        raise InvalidArgumentError(f"--calib {','.join(paths)}: every training sequence is held back")
    return CalibData(train, first.heldout,
                     " + ".join(c.description for c in parts)
                     + f" (together: {train.shape[0]} x {train.shape[1]} train"
                     + (f", {int(seen.sum())} equal to a held-back sequence dropped" if seen.any() else "")
                     + f"; held back: the first file's {first.heldout.shape[0]})")


def load_saved(what: str) -> CalibData:
    """`--calib A.npz` or `--calib A.npz,B.npz,...`."""
    paths = what.split(",")
    if len(paths) > 1 and all(p.endswith(".npz") for p in paths):
        return load_many(paths)
    return load(what)


def make(desc: ModelDesc, spec: str, *, seq_len: int, n: Optional[int], seed: int, n_heldout: int,
         progress: bool) -> CalibData:
    """Calibration data for `spec` ('self[:N]', a text file path, or .npz files, comma-separated)."""
    what, n_self = parse_spec(spec)
    if what.endswith(".npz"):
        return load_saved(what)
    if what == "self":
        n = n_self or n or 128
        half = len(SELF_PROMPTS) // 2
        train = sample_self(desc, n, seq_len, seed, SELF_PROMPTS[:half] if n >= half else SELF_PROMPTS[:max(n, 1)],
                            progress, "calibration")
        held = sample_self(desc, n_heldout, seq_len, seed + 1, SELF_PROMPTS[half:], progress, "held-back text")
        return CalibData(train, held, f"self: {n} x {seq_len} tokens sampled from the teacher at "
                                      f"temperature 1 (seed {seed}), {n_heldout} held back")
    text = check_text_file(what)
    return from_text(desc, text, n or 128, seq_len, seed, Path(what).name, n_heldout)
