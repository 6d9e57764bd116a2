"""examples/sensor: the three models train on generated signals, export with torch.onnx, compile,
equal onnxruntime on random and edge inputs (f32 tolerance; NaN as onnxruntime has it), and stream:
every window WindowStream emits equals onnxruntime on the same window cut out by numpy."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="edgert[sensor] is part of the test extra: pip install '.[test]'")
pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sensor_reference import check_model  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sensor"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train
    finally:
        sys.path.remove(str(EXAMPLES))
    cache = tmp_path_factory.mktemp("sensor-examples-cache")
    old = os.environ.get("EDGERT_SENSOR_CACHE")
    os.environ["EDGERT_SENSOR_CACHE"] = str(cache)
    models = {m.name: m for m in train.train_all(tmp_path_factory.mktemp("sensor-examples"))}
    yield train, models
    if old is None:
        os.environ.pop("EDGERT_SENSOR_CACHE", None)
    else:
        os.environ["EDGERT_SENSOR_CACHE"] = old


@pytest.mark.slow
@pytest.mark.parametrize("name,minimum", [("mlp_anomaly", 0.9), ("cnn_gesture", 0.9),
                                          ("gru_activity", 0.9)])
def test_example_trains_matches_onnxruntime_and_streams(trained, name, minimum):
    train, models = trained
    ex = models[name]
    assert ex.score >= minimum, f"{name}: {ex.metric} {ex.score:.3f} (the example should learn)"
    from edgert import sensor
    shape = sensor.compile(ex.path).input_shapes[0]
    # GRU: onnxruntime's recurrent kernel clamps NaN (see test_sensor_ops.RNN_CASES)
    cases = ("random", "zeros", "large") if name == "gru_activity" else \
        ("random", "zeros", "large", "nan")
    check_model(Path(ex.path).read_bytes(), {"x": shape}, tol="f32_transcendental",
                edge_cases=cases)
    r = train.stream_demo(ex, seconds=30.0)
    assert r["windows"] > 10
    assert r["max_abs_diff"] <= 1e-4, r
    assert r["same_argmax"] == 1.0, r
