"""Does rotating the model before quantizing it help edgert's block formats? (issue 10, 2026-12-04)

QuaRot / SpinQuant rotate the residual stream by an orthogonal R1 (RMSNorm weights folded into the
linears that read them, then embedding E R1, readers W R1, writers R1^T W) and each value head by
an R2 (V rows, attention-output columns): the function is unchanged, outlier channels are spread.
Everything folds into the weights (a tied output matrix becomes its own, since the final norm
cannot fold into a shared embedding), so no runtime change would be needed.

This script measures it, with round-to-nearest in PyTorch (f32 activations: the weights' error
alone), on held-back calibration sequences (SmolLM2) or TinyStories text (stories260K):

    python benchmarks/compress_rotation.py --model smollm2 --calib calib.npz --types q3_0,q4_0
    python benchmarks/compress_rotation.py --model stories --types q3_0,q4_0
    python benchmarks/compress_rotation.py --model smollm2 --write rot.edgt   # rotated f32 file, then
    edgert compress rot.edgt -o rot-mix.edgt --quant q3_k:gptq --target-bpw 3.6 --embed-type q5_1 --calib calib.npz

Variants: none (the model as is), fold (norms folded, R = identity: the folding alone), rot (fold +
R1 + R2, randomized Hadamard: random signs x (H_64 kron random orthogonal 9x9) for 576).
Results: benchmarks/results/compress-rotation-calib-2026-12-04.md (it did not help: not in compress).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SMOLLM2 = SHARED / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STORIES = SHARED / "models" / "stories260K" / "hf"


def _hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def random_rotation(n: int, gen: torch.Generator) -> torch.Tensor:
    k = n & -n
    q, r = torch.linalg.qr(torch.randn(n // k, n // k, generator=gen, dtype=torch.float64))
    q = (q * torch.sign(torch.diagonal(r))[None, :]).contiguous()
    signs = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    return signs[:, None] * torch.kron(_hadamard(k), q)


def rotate(desc, seed: int, identity: bool = False) -> None:
    """Fold the norms, then (unless identity) rotate; in place on a ModelDesc with resident weights."""
    from converters.llama_tensor_names import name as reg
    W, hp = desc.weights, desc.hparams
    H, dh, L = int(hp["hidden_size"]), desc.head_dim, desc.n_layers
    gen = torch.Generator().manual_seed(seed)
    rot = (lambda n: torch.eye(n, dtype=torch.float64)) if identity else (lambda n: random_rotation(n, gen))

    def fold(norm, readers):
        for r in readers:
            W[r] = W[r] * W[norm][None, :]
        W[norm] = torch.ones_like(W[norm])

    if "output.weight" not in W:
        W["output.weight"] = W["token_embd.weight"].clone()
        hp["tie_embeddings"] = False
    fold("output_norm.weight", ["output.weight"])
    r1 = rot(H).float()
    W["token_embd.weight"] = W["token_embd.weight"] @ r1
    W["output.weight"] = W["output.weight"] @ r1
    for l in range(L):
        fold(reg("ATTN_NORM", l), [reg(i, l) for i in ("ATTN_Q", "ATTN_K", "ATTN_V")])
        fold(reg("FFN_NORM", l), [reg(i, l) for i in ("FFN_GATE", "FFN_UP")])
        for i in ("ATTN_Q", "ATTN_K", "ATTN_V", "FFN_GATE", "FFN_UP"):
            W[reg(i, l)] = W[reg(i, l)] @ r1
        for i in ("ATTN_OUTPUT", "FFN_DOWN"):
            W[reg(i, l)] = r1.T @ W[reg(i, l)]
        d = desc.layer_dims(l)
        group = d.heads // d.kv_heads
        wv, wo = W[reg("ATTN_V", l)].clone(), W[reg("ATTN_OUTPUT", l)].clone()
        for h in range(d.kv_heads):
            r2 = rot(dh).float()
            wv[h * dh:(h + 1) * dh] = r2.T @ wv[h * dh:(h + 1) * dh]
            for j in range(h * group, (h + 1) * group):
                wo[:, j * dh:(j + 1) * dh] = wo[:, j * dh:(j + 1) * dh] @ r2
        W[reg("ATTN_V", l)], W[reg("ATTN_OUTPUT", l)] = wv, wo


def rtn(t: torch.Tensor, typ: str) -> torch.Tensor:
    from converters.compress.quantize_stage import _round_to_nearest
    from converters.dtypes import BY_NAME
    dt = BY_NAME[typ]
    if t.shape[1] % dt.block_size:
        return t  # not whole blocks: stays float (stories260K's 172-wide FFN)
    return _round_to_nearest(t, dt)[0]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from converters.compress import calibration, forward, model_desc
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["smollm2", "stories"], default="stories")
    ap.add_argument("--calib", help="SmolLM2: a --save-calib .npz; its held-back sequences are the text")
    ap.add_argument("--types", default="q3_0,q4_0")
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", help="write the rotated model (f32 .edgt) here and stop")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load = (lambda: model_desc.from_source(SMOLLM2, allow_quantized=True)) if a.model == "smollm2" \
        else (lambda: model_desc.from_source(STORIES))
    if a.write:
        from converters.compress import write
        d = load()
        rotate(d, a.seed)
        write.write_desc(d, a.write, compression={"stage": "rotated", "seed": a.seed})
        print(f"wrote {a.write}")
        return
    base = load()
    if a.model == "smollm2":
        if not a.calib:
            ap.error("--model smollm2 needs --calib FILE.npz (never the evaluation text)")
        ids = calibration.load(a.calib).heldout[:a.seqs]
    else:
        text = (SHARED / "data" / "text" / "tinystories-valid-sample.txt").read_text(encoding="utf-8")
        ids = torch.tensor(calibration._tokenizer(base).encode(text)[:a.seqs * 256]).view(a.seqs, 256)
    with torch.no_grad():
        ref = torch.log_softmax(forward.logits(base.weights, base.hparams, ids).double(), -1)
        nll0 = -ref[:, :-1].gather(-1, ids[:, 1:, None]).mean().item()
        print(f"{a.model}: {ids.shape[0]} x {ids.shape[1]} tokens, float PPL {math.exp(nll0):.3f}")
        for typ in a.types.split(","):
            for variant in ("none", "fold", "rot"):
                d = base if variant == "none" else load()  # rtn() below leaves d's weights as they are
                if variant != "none":
                    rotate(d, a.seed, identity=variant == "fold")
                    same = forward.logits(d.weights, d.hparams, ids[:1])
                    drift = float((torch.log_softmax(same.double(), -1) - ref[:1]).abs().max())
                else:
                    drift = 0.0
                W = {n: (rtn(w, typ) if w.ndim == 2 and n.startswith("blk.") else w) for n, w in d.weights.items()}
                lp = torch.log_softmax(forward.logits(W, d.hparams, ids).double(), -1)
                kld = float((ref.exp() * (ref - lp)).sum(-1).mean())
                nll = -lp[:, :-1].gather(-1, ids[:, 1:, None]).mean().item()
                print(f"  {typ} RTN block matrices, {variant:4s}: PPL {math.exp(nll):9.3f}  KLD {kld:.4f}"
                      f"  (float logprob drift {drift:.1e})", flush=True)


if __name__ == "__main__":
    main()
