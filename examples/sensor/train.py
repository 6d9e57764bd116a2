"""Three tiny sensor models trained in seconds on generated signals, exported to ONNX with PyTorch's
exporter, then run through edgert's streaming path.

    python examples/sensor/train.py --out /tmp/sensor-models        # train, export, stream

  mlp_anomaly.onnx   vibration anomaly detector: an MLP autoencoder over a 128-sample window of one
                     accelerometer axis; its output is the reconstruction error (the anomaly score)
  cnn_gesture.onnx   1-D CNN classifier over 128 samples x 3 axes: 4 motion classes
  gru_activity.onnx  GRU over 64 time steps x 3 axes: the same 4 classes from a shorter window

scikit-learn does the data work (the per-channel StandardScaler whose mean/std the stream applies,
the train/test split, ROC AUC and accuracy); torch trains (CPU, one thread) and exports
(`torch.onnx.export`, TorchScript exporter, opset 17). Everything is seeded: same data, same models.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FS = 100.0          # samples per second of the generated accelerometer
WINDOW = 128
HOP = 32
GRU_WINDOW = 64
CLASSES = ["still", "walk", "shake", "circle"]


# -- generated signals ------------------------------------------------------------------------------

def vibration(n: int, rng: np.random.Generator, anomalous: bool = False) -> np.ndarray:
    """One axis of a machine's vibration: two harmonics of the shaft + noise; an anomaly adds a
    bearing-fault tone and impulses."""
    t = np.arange(n) / FS
    f0 = 7.0 + rng.normal(0, 0.2)
    x = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.28)) + \
        0.4 * np.sin(2 * np.pi * 2 * f0 * t + rng.uniform(0, 6.28)) + rng.normal(0, 0.15, n)
    if anomalous:
        x += 0.6 * np.sin(2 * np.pi * 31.0 * t + rng.uniform(0, 6.28))
        spikes = rng.random(n) < 0.03
        x += spikes * rng.normal(0, 2.0, n)
    return x.astype(np.float32)


def motion(cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 3] accelerometer samples of one of CLASSES."""
    t = np.arange(n) / FS
    g = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.05, 3)
    x = np.tile(g, (n, 1))
    ph = rng.uniform(0, 6.28)
    if cls == 1:    # walk: 2 Hz vertical bounce, forward sway
        f = rng.uniform(1.6, 2.2)
        x[:, 2] += 0.5 * np.sin(2 * np.pi * f * t + ph)
        x[:, 0] += 0.2 * np.sin(np.pi * f * t + ph)
    elif cls == 2:  # shake: fast lateral oscillation
        f = rng.uniform(6.0, 8.0)
        x[:, 1] += 0.9 * np.sin(2 * np.pi * f * t + ph)
    elif cls == 3:  # circle: x and y in quadrature
        f = rng.uniform(0.8, 1.2)
        x[:, 0] += 0.7 * np.cos(2 * np.pi * f * t + ph)
        x[:, 1] += 0.7 * np.sin(2 * np.pi * f * t + ph)
    x += rng.normal(0, 0.08, x.shape)
    return x.astype(np.float32)


def motion_stream(n_segments: int, seg_len: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CLASSES), n_segments)
    return np.concatenate([motion(int(c), seg_len, rng) for c in labels]), np.repeat(labels,
                                                                                    seg_len)


# -- models -------------------------------------------------------------------------------------------

def _torch() -> Any:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return torch


def build_mlp(torch: Any, mean: float, std: float) -> Any:
    nn = torch.nn

    class MlpAnomaly(nn.Module):
        """x [1, 128] -> reconstruction error [1, 1]; the window is normalised inside."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(WINDOW, 48), nn.ReLU(), nn.Linear(48, 12), nn.Tanh())
            self.dec = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, WINDOW))

        def forward(self, x: Any) -> Any:
            r = self.dec(self.enc(x))
            d = x - r
            return (d * d).mean(dim=1, keepdim=True)
    del mean, std
    return MlpAnomaly()


def build_cnn(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv1d(3, 16, 7, padding=3), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 24, 5, padding=2), nn.BatchNorm1d(24), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(24, 32, 3, padding=1, groups=8), nn.BatchNorm1d(32), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, len(CLASSES)))


def build_gru(torch: Any) -> Any:
    nn = torch.nn

    class GruActivity(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(3, 24, batch_first=True)
            self.fc = nn.Linear(24, len(CLASSES))

        def forward(self, x: Any) -> Any:
            _, h = self.gru(x)
            return self.fc(h[-1])
    return GruActivity()


def _fit(torch: Any, model: Any, x: np.ndarray, y: np.ndarray, loss_fn: Any, epochs: int,
         lr: float = 3e-3, batch: int = 64) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()


def _export(torch: Any, model: Any, example: np.ndarray, path: Path) -> None:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(example),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])


@dataclass
class ExampleModel:
    name: str
    path: str
    window: int
    hop: int
    channels: int
    mean: list[float]
    std: list[float]
    metric: str
    score: float
    train_s: float


def windows_of(signal: np.ndarray, window: int, hop: int) -> np.ndarray:
    """[k, window, C] windows every `hop` samples (the stream's windows, by numpy)."""
    sig = signal.reshape(len(signal), -1)
    starts = np.arange(0, len(sig) - window + 1, hop)
    return np.stack([sig[s:s + window] for s in starts])


def train_mlp(out: Path, seed: int = 0) -> ExampleModel:
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler
    torch = _torch()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    normal = np.concatenate([vibration(4000, rng) for _ in range(6)])
    scaler = StandardScaler().fit(normal.reshape(-1, 1))
    mean, std = float(scaler.mean_[0]), float(scaler.scale_[0])
    xw = ((windows_of(normal, WINDOW, 16)[..., 0] - mean) / std).astype(np.float32)
    model = build_mlp(torch, mean, std)
    _fit(torch, model, xw, xw, lambda score, _: score.mean(), epochs=15)
    test_n = windows_of(vibration(3000, rng), WINDOW, HOP)[..., 0]
    test_a = windows_of(vibration(3000, rng, anomalous=True), WINDOW, HOP)[..., 0]
    with torch.no_grad():
        s_n = model(torch.from_numpy(((test_n - mean) / std).astype(np.float32))).numpy()[:, 0]
        s_a = model(torch.from_numpy(((test_a - mean) / std).astype(np.float32))).numpy()[:, 0]
    auc = float(roc_auc_score(np.r_[np.zeros(len(s_n)), np.ones(len(s_a))], np.r_[s_n, s_a]))
    path = out / "mlp_anomaly.onnx"
    _export(torch, model, xw[:1], path)
    return ExampleModel("mlp_anomaly", str(path), WINDOW, HOP, 1, [mean], [std], "roc_auc", auc,
                        time.perf_counter() - t0)


def _motion_data(rng: np.random.Generator, window: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CLASSES), n)
    return np.stack([motion(int(c), window, rng) for c in labels]), labels.astype(np.int64)


def train_cnn(out: Path, seed: int = 1) -> ExampleModel:
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    torch = _torch()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x, y = _motion_data(rng, WINDOW, 1200)
    scaler = StandardScaler().fit(x.reshape(-1, 3))
    xn = ((x - scaler.mean_) / scaler.scale_).astype(np.float32).transpose(0, 2, 1).copy()
    xtr, xte, ytr, yte = train_test_split(xn, y, test_size=0.25, random_state=0)
    model = build_cnn(torch)
    _fit(torch, model, xtr, ytr, torch.nn.functional.cross_entropy, epochs=6)
    with torch.no_grad():
        acc = float(accuracy_score(yte, model(torch.from_numpy(xte)).argmax(1).numpy()))
    path = out / "cnn_gesture.onnx"
    _export(torch, model, xte[:1], path)
    return ExampleModel("cnn_gesture", str(path), WINDOW, HOP, 3, scaler.mean_.tolist(),
                        scaler.scale_.tolist(), "accuracy", acc, time.perf_counter() - t0)


def train_gru(out: Path, seed: int = 2) -> ExampleModel:
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    torch = _torch()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x, y = _motion_data(rng, GRU_WINDOW, 1200)
    scaler = StandardScaler().fit(x.reshape(-1, 3))
    xn = ((x - scaler.mean_) / scaler.scale_).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(xn, y, test_size=0.25, random_state=0)
    model = build_gru(torch)
    _fit(torch, model, xtr, ytr, torch.nn.functional.cross_entropy, epochs=8, lr=1e-2)
    with torch.no_grad():
        acc = float(accuracy_score(yte, model(torch.from_numpy(xte)).argmax(1).numpy()))
    path = out / "gru_activity.onnx"
    _export(torch, model, xte[:1], path)
    return ExampleModel("gru_activity", str(path), GRU_WINDOW, 16, 3, scaler.mean_.tolist(),
                        scaler.scale_.tolist(), "accuracy", acc, time.perf_counter() - t0)


def train_all(out: Path) -> list[ExampleModel]:
    out.mkdir(parents=True, exist_ok=True)
    models = [train_mlp(out), train_cnn(out), train_gru(out)]
    (out / "examples.json").write_text(json.dumps([asdict(m) for m in models], indent=1))
    return models


def stream_demo(ex: ExampleModel, seconds: float = 60.0, seed: int = 7) -> dict[str, Any]:
    """Generate `seconds` of signal, push it through edgert's stream in random-sized chunks and
    check every window's output against onnxruntime on the same window."""
    import onnxruntime as ort
    from edgert import sensor
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    if ex.channels == 1:
        sig = np.concatenate([vibration(n // 2, rng), vibration(n - n // 2, rng, True)])[:, None]
    else:
        sig, _ = motion_stream(max(1, n // 400), 400, rng)
    m = sensor.compile(ex.path)
    s = sensor.WindowStream(m, ex.window, ex.hop, mean=ex.mean, std=ex.std)
    outs = []
    i = 0
    while i < len(sig):
        k = int(rng.integers(1, 300))
        outs.append(s.push(sig[i:i + k]))
        i += k
    got = np.concatenate(outs)
    wins = (windows_of(sig, ex.window, ex.hop) - np.array(ex.mean)) / np.array(ex.std)
    sess = ort.InferenceSession(ex.path, providers=["CPUExecutionProvider"])
    shape = sess.get_inputs()[0].shape
    ref = []
    for w in wins.astype(np.float32):
        feed = w.T if ex.name == "cnn_gesture" else w
        ref.append(sess.run(None, {"x": feed.reshape(shape)})[0].reshape(-1))
    ref_a = np.stack(ref)
    return {"model": ex.name, "windows": len(got), "max_abs_diff": float(np.abs(got - ref_a).max()),
            "same_argmax": float((got.argmax(1) == ref_a.argmax(1)).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="sensor-models", help="where the .onnx files go")
    args = ap.parse_args()
    for ex in train_all(Path(args.out)):
        print(f"{ex.name:13} {ex.metric} {ex.score:.3f}  trained+exported in {ex.train_s:.1f} s "
              f"-> {ex.path}")
        r = stream_demo(ex)
        print(f"{'':13} streamed {r['windows']} windows: max |edgert - onnxruntime| "
              f"{r['max_abs_diff']:.2e}, same argmax {r['same_argmax']:.0%}")


if __name__ == "__main__":
    main()
