"""The wheel `pip` builds from this checkout: it must carry the compiled module, the converters
(as edgert.converters) with the shared tensor-name registry, and the console script."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contents(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    wheels = list(tmp_path.glob("edgert-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        registry = whl.read("edgert/converters/llama_tensor_names.def").decode()
        entry_points = next(whl.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert any(n.startswith("edgert/_edgert") and n.endswith(".so") for n in names)
    # the sensor path: its Cython runtime is compiled into the wheel, its modules and the exporter
    assert any(n.startswith("edgert/sensor/_runtime") and n.endswith(".so") for n in names)
    for module in ("edgert/sensor/__init__.py", "edgert/sensor/compiler.py",
                   "edgert/sensor/ops.py", "edgert/sensor/cli.py", "edgert/onnx_export.py"):
        assert module in names, f"{module} missing from the wheel"
    for module in ("edgert/__init__.py", "edgert/errors.py", "edgert/llm.py", "edgert/model.py",
                   "edgert/cli.py", "edgert/converters/__init__.py", "edgert/converters/cli.py"):
        assert module in names, f"{module} missing from the wheel"
    assert registry == (REPO / "native/src/models/llama_tensor_names.def").read_text()
    assert "edgert = edgert.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "native/", "converters/")) for n in names)
