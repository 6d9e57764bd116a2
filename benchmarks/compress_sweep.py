"""Calibrated-quantization variants side by side, measured in PyTorch (f32 activations: the
weights' error alone, without the runtime's int8 activations) against the same f32 teacher on the
same evaluation text: the screening loop behind compress_bench.py's recipe (issue 10).

    python benchmarks/compress_sweep.py --calib /work/cbench/calib.npz \\
        --variants 'q4_0:rtn;q4_0:gptq;q4_0:gptq,act_order=1;q4_0:gptq,refit=2' --threads 1

Each variant is an `edgert compress --quant` string (recipe.parse_quant), optionally followed by
`@lsq` (Q40Grid.lsq on: least-squares scale candidates in the group fit). Every variant quantizes a
fresh copy of the teacher (SmolLM2-135M's Q4_1 GGUF dequantized, as compress_bench.py) on the
same calibration sequences (a .npz kept by `--save-calib`, or self:N sampled here once and kept
with --save-calib); evaluation as compress_bench.py: wikitext-2 test (never calibration text),
chunks of --ctx tokens, the second half of each scored, PPL and mean KLD(teacher ‖ model) over the
whole vocabulary. One JSON line per variant goes to --out as it finishes;
`python benchmarks/compress_sweep.py --table A.jsonl B.jsonl ...` prints them as a markdown table
(cuts against the q4_0:rtn line: run q4_0:rtn first, on any calibration; RTN uses none).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
# The checkout's converters/ (appended: the installed edgert, with its native module, must win).
sys.path.append(str(ROOT))
from compress_bench import GGUF, WIKI, loadavg  # noqa: E402


def table(paths: list[Path]) -> str:
    """A markdown table of sweep lines (one or more --out files): PPL, KLD and the cuts of the PPL
    gap and of the KLD against the q4_0:rtn line of the same calibration file's run."""
    lines = ["| calibration | variant | PPL | gap | mean KLD | gap cut | KLD cut | quantize s | loadavg |",
             "|---|---|---|---|---|---|---|---|---|"]
    teacher = rtn = None
    calib = ""
    for p in paths:
        for row in map(json.loads, Path(p).read_text().splitlines()):
            if row["variant"] == "teacher-f32":
                teacher, calib = row["ppl"], row["calibration"].split(" tokens")[0]
                lines.append(f"| {calib} | teacher f32 | {row['ppl']:.3f} | | | | | | |")
                continue
            if row["variant"] == "q4_0:rtn":
                rtn = row
            cut = kcut = ""
            if rtn is not None and row["variant"].startswith("q4_0"):
                cut = f"{100 * (1 - (row['ppl'] - teacher) / (rtn['ppl'] - teacher)):.0f}%"
                kcut = f"{100 * (1 - row['kld'] / rtn['kld']):.0f}%"
            lines.append(f"| {calib} | {row['variant']} | {row['ppl']:.3f} | {row['ppl'] - teacher:+.3f} | "
                         f"{row['kld']:.4f} | {cut} | {kcut} | {row['quant_seconds']} | {row['loadavg']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--table":
        print(table([Path(p) for p in sys.argv[2:]]), end="")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calib", required=True, help=".npz from --save-calib, or self:N (sampled here)")
    ap.add_argument("--seq-len", type=int, default=256, help="tokens per sampled sequence (self:N only)")
    ap.add_argument("--save-calib", type=Path, default=None)
    ap.add_argument("--variants", required=True, help="';'-separated --quant strings, each optionally @lsq")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--text", type=Path, default=WIKI)
    ap.add_argument("--out", type=Path, default=Path("sweep.jsonl"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import functools

    from converters.compress import calibration, forward, grids, model_desc, quantize_stage, recipe
    from edgert.tokenizer import Tokenizer

    teacher = model_desc.from_source(str(GGUF), allow_quantized=True)
    if a.calib.endswith(".npz"):
        calib = calibration.load(a.calib)
    else:
        calib = calibration.make(teacher, a.calib, seq_len=a.seq_len, n=None, seed=0, n_heldout=8, progress=True)
        if a.save_calib:
            calibration.save(calib, a.save_calib)
    tok = Tokenizer.from_metadata({"tokenizer": teacher.tokenizer, "chat_template": teacher.chat_template})
    ids = torch.tensor(tok.encode(a.text.read_text(encoding="utf-8")), dtype=torch.long)
    n_chunks = min(len(ids), a.max_tokens) // a.ctx
    chunks = ids[:n_chunks * a.ctx].view(n_chunks, a.ctx)
    first = a.ctx // 2
    tgt = chunks[:, first + 1:]

    @torch.no_grad()
    def logp(W) -> torch.Tensor:
        out = []
        for c in range(n_chunks):
            lg = forward.logits(W, teacher.hparams, chunks[c:c + 1])[0, first:a.ctx - 1]
            out.append(torch.log_softmax(lg.double(), -1).float())
        return torch.stack(out)

    t0 = time.monotonic()
    ref = logp(teacher.weights)
    count = tgt.numel()

    def nll(lp):
        return float(-lp.double().gather(-1, tgt[..., None]).sum()) / count

    base = {"variant": "teacher-f32", "ppl": math.exp(nll(ref)), "kld": None, "seconds": round(time.monotonic() - t0, 1),
            "n_scored": count, "calibration": calib.description, "loadavg": loadavg()}
    print(json.dumps(base), flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(base) + "\n")
    for v in a.variants.split(";"):
        spec_text, _, flag = v.partition("@")
        spec = recipe.parse_quant(spec_text)
        grids.GRIDS["q4_0"] = functools.partial(grids.Q40Grid, lsq=flag == "lsq")
        t0 = time.monotonic()
        desc = teacher.copy()
        res = quantize_stage.quantize_model(desc, calib.train, spec, seed=0)
        tq = time.monotonic() - t0
        lp = logp(desc.weights)
        kld = float((ref.exp().double() * (ref.double() - lp.double())).sum()) / count
        errs = [e for n, e in res.errors.items()]
        row = {"variant": v, "ppl": math.exp(nll(lp)), "kld": kld, "quant_seconds": round(tq, 1),
               "layer_error_mean": sum(errs) / max(len(errs), 1), "n_scored": count, "loadavg": loadavg()}
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        del desc, lp
    return 0


if __name__ == "__main__":
    sys.exit(main())
