"""The one pipeline the CLI (`edgert compress`) and Python (`compress()`) share:

    check the recipe and inputs → read the teacher → calibration data → [source]
      → prune → [pruned] → refit → [refit] → distill → [healed] → quantize → [quantized]
      → train codes block by block → [blocks] → tune scales → [tuned] → write OUT atomically

Bracketed names are the quality report's rows. Each stage is a function from a model
description to a model description. The teacher's weights are dropped as soon as no stage needs
them (only distillation does). Without pruning and distillation the run streams: the teacher's
matrices are decoded from the source when needed (model_desc.LazyWeights): the whole float model
is resident only while sampling calibration text from the teacher (the report decodes each matrix
when its forward pass reads it); quantization holds one block's floats and the calibration activations
at one block boundary, and a quantized block keeps only its encoded bytes. Peak RSS on
SmolLM2-135M: README's compression section.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgert.errors import InvalidArgumentError

from .recipe import Recipe


@dataclass
class CompressResult:
    path: Path
    stages: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    seconds: float = 0.0


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def _save_stage(where, stage: str, model, rep) -> None:
    if where is not None:
        from .write import write_desc
        Path(where).mkdir(parents=True, exist_ok=True)
        write_desc(model, Path(where) / f"{stage}.edgt",
                   compression={"stage": stage, "report": [s.as_dict() for s in rep.stages]})


def sample_calibration(src: str | os.PathLike, save_calib: str | os.PathLike, recipe: Optional[Recipe] = None, *,
                       progress: Optional[bool] = None, tokenizer: Optional[str] = None) -> CompressResult:
    """Only the calibration data of `recipe` (`--calib`, `--seq-len`, `--seed`), saved to
    `save_calib` for later runs' `--calib FILE.npz[,FILE2.npz...]`: e.g. `self:N` sampled in
    several processes at once, each with its own seed (`edgert compress SRC --calib self:320
    --seed 3 --save-calib c3.npz`, no -o)."""
    from . import calibration, model_desc

    recipe = recipe or Recipe()
    progress = sys.stderr.isatty() if progress is None else progress
    t_start = time.monotonic()
    if recipe.threads:
        import torch
        torch.set_num_threads(recipe.threads)
    what, _ = calibration.parse_spec(recipe.calib.source)
    if what.endswith(".npz"):
        calibration.load_saved(what)
    elif what != "self":
        calibration.check_text_file(what)
    teacher = model_desc.from_source(src, allow_quantized=recipe.allow_quantized_source, tokenizer=tokenizer,
                                     lazy=what != "self")
    calib = calibration.make(teacher, recipe.calib.source, seq_len=recipe.calib.seq_len, n=recipe.calib.n,
                             seed=recipe.seed, n_heldout=recipe.calib.heldout, progress=progress)
    _check_vocab(teacher, calib, recipe.calib.source)
    calibration.save(calib, save_calib)
    return CompressResult(Path(save_calib), [], calib.description, time.monotonic() - t_start)


def _check_vocab(teacher, calib, source: str) -> None:
    vocab = int(teacher.hparams["vocab_size"])
    if int(calib.train.max()) >= vocab or int(calib.heldout.max()) >= vocab:
        raise InvalidArgumentError(f"--calib {source}: token ids outside this model's vocabulary")


def compress(src: str | os.PathLike, out: str | os.PathLike, recipe: Optional[Recipe] = None, *,
             progress: Optional[bool] = None, tokenizer: Optional[str] = None,
             save_stages: Optional[str | os.PathLike] = None,
             save_calib: Optional[str | os.PathLike] = None) -> CompressResult:
    """Compress `src` into the `.edgt` file `out` under `recipe` (default: GPTQ q4_0 on 128
    sequences sampled from the model). Returns the path and the quality report.
    save_stages: a directory that also receives each float stage as `pruned.edgt` / `healed.edgt`
    (f32), for evaluating them on other text. save_calib: keep the calibration tokens (.npz) for
    another run's `--calib FILE.npz`."""
    import torch

    from . import calibration, distill, model_desc, prune, quantize_stage, report, write

    recipe = recipe or Recipe()
    progress = sys.stderr.isatty() if progress is None else progress
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    # Inputs that need no model are checked first.
    what, _ = calibration.parse_spec(recipe.calib.source)
    if what.endswith(".npz"):
        calibration.load_saved(what)
    elif what != "self":
        calibration.check_text_file(what)
    if recipe.quant is None and not recipe.prune.active and not recipe.distill.active:
        raise InvalidArgumentError("nothing to do: give --prune, --distill and/or --quant")
    if recipe.distill.active and not recipe.prune.active and recipe.quant is None:
        _say(progress, "note: distilling an unpruned, unquantized student only retrains the teacher")

    _say(progress, f"reading {src}")
    # Without pruning or distillation the stages stream: the teacher's matrices are read from the
    # source when needed (resident while sampling and measuring, then one block at a time).
    streaming = not recipe.prune.active and not recipe.distill.active
    teacher = model_desc.from_source(src, allow_quantized=recipe.allow_quantized_source, tokenizer=tokenizer,
                                     lazy=streaming)
    if what == "self":
        teacher.load(list(teacher.weights))  # sampling reads every matrix once per token
    recipe.prune.validate(teacher)
    if recipe.quant is not None:
        quantize_stage.check_target(teacher, recipe.quant)

    calib = calibration.make(teacher, recipe.calib.source, seq_len=recipe.calib.seq_len, n=recipe.calib.n,
                             seed=recipe.seed, n_heldout=recipe.calib.heldout, progress=progress)
    teacher.release(list(teacher.weights))  # from here on a matrix is decoded when read
    _check_vocab(teacher, calib, recipe.calib.source)
    if save_calib is not None:
        calibration.save(calib, save_calib)
    rep = report.QualityReport(calib.heldout)
    extra: dict[str, Any] = {}
    try:
        _say(progress, "measuring the source")
        rep.measure("source", teacher)
        model = teacher
        if recipe.prune.active:
            model, pres = prune.prune_model(teacher, calib.train, recipe.prune, progress=progress,
                                            drop_source=not (recipe.distill.active or recipe.prune.refit))
            extra["prune"] = pres.as_dict()
            rep.measure("pruned", model)
            _save_stage(save_stages, "pruned", model, rep)
            if recipe.prune.refit:
                errs = prune.refit_ffn(model, teacher, pres, calib.train, progress=progress)
                extra["prune"]["refit_ffn_error_mean"] = round(sum(errs) / max(len(errs), 1), 5)
                rep.measure("refit", model)
                _save_stage(save_stages, "refit", model, rep)
                if not recipe.distill.active:
                    teacher.weights.clear()
        if recipe.distill.active:
            ckpt = out.with_name(out.name + ".distill.ckpt")
            student = model if model is not teacher else teacher.copy()
            before = {k: v.clone() for k, v in student.weights.items()}
            extra["distill"] = distill.distill(student, teacher, calib.train, recipe.distill,
                                               checkpoint=ckpt, progress=progress)
            model = student
            healed = rep.measure("healed", model)
            prev = rep.stages[-2]
            if prev.kld is not None and healed.kld > prev.kld:
                # Too few or too noisy steps made the held-back KLD worse: keep the weights from
                # before distillation (the report keeps both rows; the provenance says so).
                _say(progress, f"distillation raised the held-back KLD ({prev.kld:.4f} -> {healed.kld:.4f}); "
                               f"keeping the {prev.stage} weights")
                student.weights.update(before)
                extra["distill"]["kept"] = prev.stage
            del before
            _save_stage(save_stages, "healed", model, rep)
        del teacher
        if recipe.quant is not None:
            q = quantize_stage.quantize_model(model, calib.train, recipe.quant, progress=progress, seed=recipe.seed,
                                              spill_dir=str(out.parent))
            counts: dict[str, int] = {}
            for t in q.types.values():
                counts[t] = counts.get(t, 0) + 1
            extra["quant"] = {"types": counts, **({"awq_alpha_mean": round(sum(q.alphas.values()) / len(q.alphas), 3)}
                                                  if q.alphas else {})}
            if recipe.quant.target_bpw is not None:
                nb, npar = quantize_stage.block_bytes_at(model, {n: q.types[n] for n in model.block_matrix_names()})
                extra["quant"]["block_bits_per_weight"] = round(8.0 * nb / npar, 4)
            quantized = rep.measure("quantized", model)
            if recipe.tune.active:
                extra["tune"] = _tune(src, model, calib.train, calib.heldout, recipe, rep, quantized, out, progress, tokenizer)
        stages = [s.as_dict() for s in rep.stages]
        compression = {"recipe": recipe.as_dict(), "calibration": calib.description,
                       "report": stages, **extra}
        path = write.write_desc(model, out, compression=compression)
    finally:
        rep.close()
    if recipe.distill.active:
        out.with_name(out.name + ".distill.ckpt").unlink(missing_ok=True)
    if recipe.tune.active:
        out.with_name(out.name + ".tune.ckpt").unlink(missing_ok=True)
    return CompressResult(path, stages, rep.table(), time.monotonic() - t_start)


def _tune(src, model, ids, heldout, recipe: Recipe, rep, quantized, out: Path, progress: bool, tokenizer) -> dict[str, Any]:
    """The tuning stages against the source, read again (the quantize stage replaced the streamed
    teacher's matrices by their quantized values): block-wise code training (blockwise.py, `blocks=E`),
    then scale tuning (tune.py). A stage that raises the held-back KLD is undone (the report keeps
    its row)."""
    from . import blockwise, distill, model_desc, tune
    spec = recipe.tune
    res: dict[str, Any] = {}
    teacher = model_desc.from_source(src, allow_quantized=recipe.allow_quantized_source, tokenizer=tokenizer, lazy=True)
    last = quantized
    norms = [n for n in model.weights if n.endswith("norm.weight")]

    def snapshot():
        return dict(model.encoded), {n: model.weights[n].clone() for n in norms}

    def restore(snap) -> None:
        for n, enc in snap[0].items():
            if model.encoded.get(n) is not enc:
                model.encoded[n] = enc
                model.settle(n)
        for n, w in snap[1].items():
            model.weights[n] = w

    if spec.blocks:
        n_mats = sum(1 for n in model.block_matrix_names()
                     if n in model.encoded and model.encoded[n][0].name in blockwise.trainable_types())
        if not n_mats:
            raise InvalidArgumentError(f"--tune blocks: no block matrix is in a type whose codes it trains "
                                       f"({', '.join(blockwise.trainable_types())})")
        _say(progress, f"training the codes of {n_mats} matrices block by block against the source")
        snap = snapshot()
        res["blocks"] = blockwise.train_blocks(
            model, teacher, ids, blockwise.BlockSpec(epochs=spec.blocks, lr=spec.block_lr, batch=spec.batch,
                                                     seed=spec.seed), heldout=heldout, progress=progress)
        trained = rep.measure("blocks", model)
        if last.kld is not None and trained.kld > last.kld:
            _say(progress, f"block-wise training raised the held-back KLD ({last.kld:.4f} -> {trained.kld:.4f}); "
                           "keeping the quantized codes")
            restore(snap)
            res["blocks"]["kept"] = "quantized"
        else:
            last = trained
        del snap
    if spec.scales_active:
        params = tune.ScaleParams(model)
        if not len(params):
            raise InvalidArgumentError(f"--tune: no matrix is in a type whose scales it tunes ({', '.join(tune.LAYOUTS)})")
        _say(progress, f"tuning the scales of {len(params)} matrices against the source")
        teacher.load(list(teacher.weights))  # every step reads every matrix
        snap = snapshot()
        res["scales"] = distill.distill(model, teacher, ids, spec, checkpoint=out.with_name(out.name + ".tune.ckpt"),
                                        progress=progress, params=params, desc="tuning scales")
        tuned = rep.measure("tuned", model)
        if last.kld is not None and tuned.kld > last.kld:
            _say(progress, f"scale tuning raised the held-back KLD ({last.kld:.4f} -> {tuned.kld:.4f}); "
                           f"keeping the {last.stage} scales")
            restore(snap)
            res["scales"]["kept"] = last.stage
    del teacher
    return res
