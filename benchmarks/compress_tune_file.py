"""Run the `--tune` stage of `edgert compress` on a file that is already quantized (issue 10).

`edgert compress SRC -o OUT --quant ... --tune time=25m` quantizes and then tunes in one process;
this script runs the same tuning (tune.ScaleParams + distill.distill against the source, what
pipeline._tune runs for `--tune` without blocks=) on OUT written by an earlier `edgert compress`
without `--tune`, so a long GPTQ run is done once and tuning runs can be repeated or continued
from its file:

    python benchmarks/compress_tune_file.py MIX.edgt SRC.gguf -o MIX-tuned.edgt \
        --calib c640.npz,c320-s3.npz --tune time=25m,lr=1e-3,schedule=cos --threads 2 \
        --allow-quantized-source

The scales start from MIX.edgt's (the quantized values are what the file decodes to, bit for bit
the same as the in-process stage has them). The tuned file is written atomically; the report's
stages are not recomputed (measure both files with compress_bench.quality on wikitext).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("quantized", help="an .edgt file written by edgert compress --quant (no --tune)")
    ap.add_argument("source", help="the teacher it was compressed from (the same SRC)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--calib", required=True, help="saved calibration sets: A.npz[,B.npz...] (--save-calib)")
    ap.add_argument("--tune", required=True, metavar="time=25m,lr=1e-3,schedule=cos,steps=N,batch=4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--allow-quantized-source", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from edgert.converters.compress import calibration, distill, model_desc, recipe, tune, write
    from edgert.converters.edgt_file import read_edgt

    r = recipe.build(tune=args.tune, quant="q4_0:gptq", threads=args.threads)  # quant: --tune needs one
    if r.tune.blocks:
        raise SystemExit("--tune blocks=E: block-wise training is not run by this script")
    torch.set_num_threads(args.threads)
    q = model_desc.from_source(args.quantized, allow_quantized=True, lazy=False)
    f = read_edgt(args.quantized)
    for e in f.tensors.values():
        if e.dtype.is_block:
            q.encoded[e.name] = (e.dtype, np.frombuffer(bytes(f.raw(e.name)), np.uint8).copy())
    teacher = model_desc.from_source(args.source, allow_quantized=args.allow_quantized_source, lazy=False)
    calib = calibration.load_saved(args.calib)
    params = tune.ScaleParams(q)
    t0 = time.monotonic()
    res = distill.distill(q, teacher, calib.train, r.tune, checkpoint=None, progress=True, params=params,
                          desc="tuning scales")
    print(f"{res['steps']} steps in {time.monotonic() - t0:.0f} s, loss {res['first_loss']:.4f} -> "
          f"{res['last_loss']:.4f}", file=sys.stderr)
    path = write.write_desc(q, Path(args.output), compression={"stage": "tuned", "from": Path(args.quantized).name,
                                                              "tune": res, "calibration": calib.description})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
