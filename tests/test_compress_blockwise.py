"""Block-wise code training (`edgert compress --tune blocks=E`, converters/compress/blockwise.py):
the trainable view of a block matrix decodes to exactly what its bytes decode to, before and after
training; training lowers each block's error against the float teacher and the model's held-back
KLD by changing codes, not only scales; the pipeline reports it as its own stage."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import STORIES
from converters import quantize
from converters.compress import blockwise, calibration, model_desc, pipeline, quantize_stage, recipe, tune
from converters.compress.model_desc import _decode_tensor
from converters.compress.report import QualityReport
from converters.dtypes import BY_NAME
from converters.edgt_file import read_edgt
from edgert.errors import InvalidArgumentError

torch.set_num_threads(1)


def _matrix(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    w[1, :32] = 0.0                  # an all-zero block (zero scale)
    w[2, 5] = 40.0                   # an outlier that sets its block's scale
    w[3, :] = -1e-3                  # a constant row
    return w


@pytest.mark.parametrize("t", blockwise.trainable_types())
def test_code_view_decodes_as_the_bytes_do(t):
    """With nothing trained, the view's values are the bytes' decoded values and it packs back to
    bytes that decode to them; after arbitrary training, the bytes it packs decode to exactly the
    values it trained with (f16 scales included), and the codes stay in the format's range."""
    dt = BY_NAME[t]
    cols = 512 if t == "q3_k" else 96
    w = _matrix(19, cols)
    raw = np.asarray(quantize.encode(w, dt)).reshape(-1).view(np.uint8)
    m = blockwise.CodeMatrix.of(dt, raw, w.shape)
    P = m.params()
    ref = _decode_tensor(raw, dt, w.shape)
    assert torch.equal(m.value(P, ste=False), ref)
    assert torch.equal(_decode_tensor(m.encode(P), dt, w.shape), ref)
    g = torch.Generator().manual_seed(1)
    P = {k: torch.randn(v.shape, generator=g) * (3.0 if k == "u" else 0.05) for k, v in P.items()}
    P["u"][0] = 1e6                  # far outside the range: clamped
    P["u"][4] = -1e6
    v = m.value(P, ste=False)
    back = _decode_tensor(m.encode(P), dt, w.shape)
    assert torch.equal(back, v), float((back - v).abs().max())
    assert not torch.equal(back, ref)
    q = m._codes(P["u"], False)
    assert q.min() >= m.qmin and q.max() <= m.qmax and (q[0] == m.qmax).all() and (q[4] == m.qmin).all()


def test_q3_k_subscales_invert_the_packing():
    rng = np.random.default_rng(3)
    sc = rng.integers(-32, 32, size=(7, 16)).astype(np.int8)
    codes = rng.integers(0, 8, size=(7, 256)).astype(np.uint8)
    raw = quantize.q3_k_pack(codes, np.full(7, 0.01, np.float32), sc)
    assert np.array_equal(blockwise.q3_k_subscales(raw), sc)


@pytest.fixture(scope="module")
def stories():
    desc = model_desc.from_source(STORIES / "hf")
    calib = calibration.make(desc, "self:64", seq_len=128, n=None, seed=0, n_heldout=8, progress=False)
    return desc, calib


@pytest.mark.parametrize("t", ["q3_0", "q4_1"])
def test_block_training_lowers_the_error_by_moving_codes(stories, t):
    desc, calib = stories
    d = desc.copy()
    quantize_stage.quantize_model(d, calib.train, quantize_stage.QuantSpec(t, "gptq"))
    rep = QualityReport(calib.heldout)
    rep.measure("source", desc)
    before = rep.measure("quantized", d)
    old = dict(d.encoded)
    res = blockwise.train_blocks(d, desc, calib.train, blockwise.BlockSpec(epochs=4, lr=2e-2),
                                 heldout=calib.heldout)
    after = rep.measure("blocks", d)
    rep.close()
    assert after.kld < 0.9 * before.kld, (before, after)
    stats = res["blocks"]
    assert len(stats) == d.n_layers and any(s["kept"] for s in stats)
    for s in stats:  # a block keeps its training only where its held-out error fell
        assert s["kept"] == (s["heldout_mse_after"] < s["heldout_mse_before"])
    # codes moved: some matrix differs from GPTQ's outside its scale fields
    per, nbytes, d_at, m_at = tune.LAYOUTS[t]
    keep = np.ones(nbytes, bool)
    for at in (d_at, m_at):
        if at is not None:
            keep[at:at + 2] = False
    moved = [n for n in old if n.startswith("blk.") and old[n][0].name == t
             and not np.array_equal(d.encoded[n][1].reshape(-1, nbytes)[:, keep], old[n][1].reshape(-1, nbytes)[:, keep])]
    assert moved
    assert all(d.encoded[n][1].nbytes == old[n][1].nbytes for n in old)


def test_pipeline_reports_the_blocks_stage(stories, out_dir):
    r = recipe.build(calib="self:16", seq_len=64, quant="q3_0:gptq", tune="blocks=2,block_lr=2e-2", threads=1)
    res = pipeline.compress(STORIES / "hf", out_dir / "b.edgt", r, progress=False)
    stages = [s["stage"] for s in res.stages]
    assert stages == ["source", "quantized", "blocks"]
    comp = read_edgt(res.path).metadata["provenance"]["compression"]
    assert comp["tune"]["blocks"]["epochs"] == 2 and len(comp["tune"]["blocks"]["blocks"]) == 5
    assert comp["recipe"]["tune"]["blocks"] == 2


@pytest.mark.parametrize("tune, match", [("blocks=-1", "blocks"), ("blocks=2,block_lr=3", "block_lr")])
def test_bad_block_settings_fail_before_work(monkeypatch, out_dir, tune, match):
    def boom(*a, **k):
        raise AssertionError("work started before the input was checked")
    monkeypatch.setattr(calibration, "make", boom)
    with pytest.raises(InvalidArgumentError, match=match):
        pipeline.compress(STORIES / "hf", out_dir / "x.edgt", recipe.build(quant="q3_0", tune=tune), progress=False)
    assert not (out_dir / "x.edgt").exists()
