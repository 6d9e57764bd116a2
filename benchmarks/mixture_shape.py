"""A mixed-precision recipe's type layout carried onto another model shape, for decode-speed
measurements: each block matrix of SRC takes the type that `--types-from` gives the same matrix
(same role) at the same relative depth (layer l of L takes layer round(l·(L'−1)/(L−1)) of L'),
round-to-nearest, so a speed figure for a 3-bit mixture measured on SmolLM2 can be taken on the
TinyLlama-1.1B shape too without calibrating a 1.1B model (decode speed depends on the types and
shapes, not on the values). The embedding takes --embed-type (default: the mixture's), an untied
output matrix --output-type (default: the embedding's); --replace q3_k=q3_0 swaps a type.

    python benchmarks/mixture_shape.py --types-from mix.edgt tinyllama-f16.gguf -o tl-mix.edgt
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="the target shape's checkpoint (float, or quantized with --allow-quantized-source)")
    ap.add_argument("--types-from", required=True, type=Path,
                    help="an .edgt whose block types are copied, or a .json {tensor name: type}")
    ap.add_argument("-o", "--output", required=True, type=Path)
    ap.add_argument("--embed-type", default=None)
    ap.add_argument("--output-type", default=None)
    ap.add_argument("--replace", default="", metavar="A=B,...",
                    help="write type A as B (e.g. q3_k=q3_0: what a q3_0-based mixture would read)")
    ap.add_argument("--allow-quantized-source", action="store_true")
    a = ap.parse_args()
    from edgert.converters.compress import model_desc, quantize_stage
    from edgert.converters.compress.write import write_desc
    from edgert.converters.edgt_file import read_edgt

    if a.types_from.suffix == ".json":  # {tensor name: type name}, e.g. a layout written down by hand
        mix = json.loads(a.types_from.read_text())
    else:
        mix = {n: e.dtype.name for n, e in read_edgt(a.types_from).tensors.items()}
    lm = 1 + max(int(n.split(".")[1]) for n in mix if n.startswith("blk."))
    desc = model_desc.from_source(a.src, allow_quantized=a.allow_quantized_source, lazy=True)
    lt = desc.n_layers
    embed_t = a.embed_type or mix["token_embd.weight"]
    out_t = a.output_type or embed_t
    swap = dict(kv.split("=") for kv in a.replace.split(",") if kv)
    types = {}
    for n in desc.matrix_names():
        if n.startswith("blk."):
            l = int(n.split(".")[1])
            ls = round(l * (lm - 1) / max(lt - 1, 1))
            t = mix[f"blk.{ls}." + n.split(".", 2)[2]]
            types[n] = swap.get(t, t)
        else:
            types[n] = out_t if n == "output.weight" else embed_t
    done = collections.Counter()
    for l in [None, *range(lt)]:
        names = [n for n in types if (n.startswith(f"blk.{l}.") if l is not None else not n.startswith("blk."))]
        desc.load(names)
        for n in names:
            wq, raw, dt = quantize_stage._quantize_one(desc.weights[n], types[n], "rtn", None, 0.01)
            desc.weights[n], desc.encoded[n] = wq, (dt, raw)
            desc.settle(n)
            done[dt.name] += 1
        print(f"\r{'embeddings' if l is None else f'layer {l + 1}/{lt}'}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    write_desc(desc, a.output, compression={"types_from": str(a.types_from), "method": "rtn",
                                            "note": "decode-speed shape copy (benchmarks/mixture_shape.py)"})
    print(f"wrote {a.output}: {dict(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
