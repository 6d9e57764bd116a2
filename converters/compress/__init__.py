"""edgert.converters.compress: calibrated quantization (GPTQ, AWQ, mixed precision), structured
pruning and knowledge distillation, composed by one pipeline with a quality report.

    from edgert.converters.compress import compress, recipe
    r = recipe.build(prune="ffn=0.25", distill="steps=200", quant="q4_0:gptq", calib="self:128")
    result = compress("teacher_dir", "student.edgt", r)
    print(result.table)

Needs torch (the optional extra: pip install 'edgert[compress]'). Stages, one file each:
calibration, prune, distill, quantize_stage (gptq, awq, grids), report; pipeline composes them.
"""
from __future__ import annotations

from .pipeline import CompressResult, compress

__all__ = ["compress", "CompressResult"]
