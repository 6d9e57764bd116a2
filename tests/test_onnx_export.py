"""`edgert export-onnx`: the exported decoder's logits against edgert's own (exact=True, f32 KV
cache: the same weights with float activations) on stories260K (f32) and SmolLM2 (q4_1 matrices as
MatMulNBits, q8_0 embedding/head), through onnxruntime; the KV-cache inputs/outputs by a two-step
run; and onnxruntime-genai loading the directory and generating edgert's greedy tokens."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
pytest.importorskip("onnxruntime")

# Logit tolerance relative to the largest |logit|: float rounding of sums in another order
# (measured: stories260K 5e-7, SmolLM2 1.6e-6).
REL_TOL = 2e-5


def _feeds(ids: np.ndarray, n_layers: int, n_kv: int, head_dim: int, past=None, past_len=0):
    b, s = ids.shape
    feeds = {"input_ids": ids, "attention_mask": np.ones((b, past_len + s), np.int64),
             "position_ids": np.arange(past_len, past_len + s, dtype=np.int64)[None].repeat(b, 0)}
    for i in range(n_layers):
        for kv in ("key", "value"):
            name = f"past_key_values.{i}.{kv}"
            feeds[name] = past[f"present.{i}.{kv}"] if past else \
                np.zeros((b, n_kv, 0, head_dim), np.float32)
    return feeds


def _session(path: Path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(str(path / "model.onnx"), so, providers=["CPUExecutionProvider"])


def _close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    tol = REL_TOL * float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{what}: max |onnx - edgert| {err:.3g} > {tol:.3g}"
    assert (got.argmax(-1) == ref.argmax(-1)).all(), f"{what}: greedy tokens differ"


@pytest.fixture(scope="module")
def stories_onnx(stories_edgt, tmp_path_factory) -> Path:
    from edgert.onnx_export import export_onnx
    return export_onnx(stories_edgt, tmp_path_factory.mktemp("stories_onnx"))


@pytest.mark.slow
def test_stories_logits_and_kv_cache(stories_edgt, stories_onnx):
    from edgert import LLM
    s = _session(stories_onnx)
    names = [o.name for o in s.get_outputs()]
    with LLM(stories_edgt, exact=True, kv_type="f32") as llm:
        ids = llm.tokenize("Once upon a time, there was a little dog")
        ref = llm.logits(ids, all_positions=True)
        hp = llm.metadata["hparams"]
    dims = (hp["num_layers"], hp["num_kv_heads"], hp["head_dim"])
    a = np.array([ids], np.int64)
    out = s.run(None, _feeds(a, *dims))
    _close(out[0][0], ref, "whole prompt")
    # the same sequence in two steps through the KV-cache inputs and outputs
    cut = len(ids) // 2
    first = dict(zip(names, s.run(None, _feeds(a[:, :cut], *dims))))
    second = s.run(None, _feeds(a[:, cut:], *dims, past=first, past_len=cut))
    _close(second[0][0], ref[cut:], "second step with the cache")
    assert second[names.index("present.0.key")].shape == (1, dims[1], len(ids), dims[2])


@pytest.mark.slow
def test_stories_batch_with_left_padding(stories_edgt, stories_onnx):
    """Two prompts of different length in one batch: the attention mask hides the padding."""
    from edgert import LLM
    s = _session(stories_onnx)
    with LLM(stories_edgt, exact=True, kv_type="f32") as llm:
        p1, p2 = llm.tokenize("The cat sat"), llm.tokenize("Lily liked to play in the park")
        r1, r2 = llm.logits(p1), llm.logits(p2)
        hp = llm.metadata["hparams"]
    n = max(len(p1), len(p2))
    ids = np.zeros((2, n), np.int64)
    mask = np.zeros((2, n), np.int64)
    pos = np.zeros((2, n), np.int64)
    for row, p in enumerate((p1, p2)):
        ids[row, n - len(p):] = p
        mask[row, n - len(p):] = 1
        pos[row, n - len(p):] = np.arange(len(p))
    feeds = _feeds(ids, hp["num_layers"], hp["num_kv_heads"], hp["head_dim"])
    feeds.update(attention_mask=mask, position_ids=pos)
    logits = s.run(None, feeds)[0]
    _close(logits[0, -1], r1, "padded row")
    _close(logits[1, -1], r2, "full row")


@pytest.mark.slow
def test_smollm2_matmulnbits_logits(smollm2_edgt, tmp_path):
    import onnx
    from edgert import LLM
    from edgert.onnx_export import export_onnx
    out = export_onnx(smollm2_edgt, tmp_path / "smollm2_onnx")
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    bits = sorted({a.i for n in nbits for a in n.attribute if a.name == "bits"})
    assert len(nbits) == 30 * 7 + 1 and bits == [4, 8]  # 210 q4_1 matrices + the q8_0 head
    s = _session(out)
    with LLM(smollm2_edgt, exact=True, kv_type="f32") as llm:
        ids = llm.tokenize("The capital of France is")
        ref = llm.logits(ids, all_positions=True)
        hp = llm.metadata["hparams"]
    got = s.run(None, _feeds(np.array([ids], np.int64), hp["num_layers"], hp["num_kv_heads"],
                             hp["head_dim"]))[0][0]
    _close(got, ref, "SmolLM2")


@pytest.mark.slow
def test_onnxruntime_genai_generates_edgert_tokens(stories_edgt, stories_onnx):
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is in the test extra")
    from edgert import LLM
    with LLM(stories_edgt, exact=True, kv_type="f32") as llm:
        ids = llm.tokenize("Once upon a time")
        want = llm.generate_ids(ids, max_tokens=16)
    model = og.Model(str(stories_onnx))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 16, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array(ids, np.int32))
    got = []
    while not gen.is_done() and len(got) < 16:
        gen.generate_next_token()
        got.append(int(gen.get_next_tokens()[0]))
    assert got[:len(want)] == want


def test_cli_export_writes_the_directory(stories_edgt, tmp_path):
    exe = Path(sys.executable).with_name("edgert")
    r = subprocess.run([str(exe), "export-onnx", str(stories_edgt), "-o", str(tmp_path / "x")],
                       capture_output=True, text=True, env=os.environ, timeout=600)
    assert r.returncode == 0, r.stderr
    for name in ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        assert (tmp_path / "x" / name).exists(), name
