"""`edgert convert` never loses data: the output is written beside the target and renamed into place
only once complete and re-read, so an error or Ctrl-C leaves an existing target untouched and no
partial file behind; and the output may never be one of the files being read (same path, symlink,
hard link, the wheel, an HF directory's shard or config)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import SMOLLM2_GGUF, STORIES
from converters import convert
from converters.edgt_file import read_edgt
from edgert.errors import InvalidArgumentError, ModelFormatError


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edgert(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgert", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture
def stories_copy(tmp_path: Path) -> Path:
    for f in ("stories260K.bin", "tok512.bin"):
        shutil.copy(STORIES / f, tmp_path / f)
    return tmp_path


def _same_file_cases(d: Path) -> list[tuple[str, list[str]]]:
    """(description, convert arguments) where the output is one of the inputs."""
    (d / "link.bin").symlink_to(d / "stories260K.bin")
    os.link(d / "stories260K.bin", d / "hard.bin")
    shutil.copytree(STORIES / "hf", d / "hf")
    with zipfile.ZipFile(d / "m.whl", "w") as z:
        z.write(STORIES / "stories260K.bin", "x/not-a-gguf.bin")
    return [
        ("same path", ["stories260K.bin", "-o", "stories260K.bin"]),
        ("same file, other spelling", ["stories260K.bin", "-o", f"../{d.name}/./stories260K.bin"]),
        ("output is a symlink to the source", ["stories260K.bin", "-o", "link.bin"]),
        ("source is a symlink to the output", ["link.bin", "-o", "stories260K.bin"]),
        ("hard link", ["stories260K.bin", "-o", "hard.bin"]),
        ("output is the tokenizer", ["stories260K.bin", "--tokenizer", "tok512.bin", "-o", "tok512.bin"]),
        ("output is the tokenizer found beside", ["stories260K.bin", "-o", "tok512.bin"]),
        ("output is an HF shard", ["hf", "-o", "hf/model.safetensors"]),
        ("output is the HF config", ["hf", "-o", "hf/config.json"]),
        ("output is the HF tokenizer", ["hf", "-o", "hf/tokenizer.json"]),
        ("output is the wheel", ["m.whl", "-o", "m.whl"]),
    ]


def test_output_may_not_be_an_input(stories_copy: Path) -> None:
    d = stories_copy
    cases = _same_file_cases(d)
    before = {p: _digest(p) for p in d.rglob("*") if p.is_file()}
    for what, args in cases:
        r = _edgert("convert", *args, cwd=d)
        assert r.returncode == 1, (what, r.returncode, r.stderr)
        assert "is also an input" in r.stderr and "Traceback" not in r.stderr, (what, r.stderr)
        after = {p: _digest(p) for p in d.rglob("*") if p.is_file()}
        assert after == before, f"{what}: the inputs changed"


def test_output_may_not_be_an_input_api(stories_copy: Path) -> None:
    d = stories_copy
    before = _digest(d / "stories260K.bin")
    with pytest.raises(InvalidArgumentError, match="is also an input"):
        convert(d / "stories260K.bin", d / "stories260K.bin", progress=False)
    with pytest.raises(InvalidArgumentError, match="directory"):
        convert(d / "stories260K.bin", d, progress=False)
    assert _digest(d / "stories260K.bin") == before


def _tree(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in d.iterdir()}


@pytest.mark.parametrize("how", ["api-SIGINT", "cli-SIGINT", "cli-SIGTERM"])
def test_interrupt_leaves_the_old_output_and_no_partial_file(stories_edgt: Path, tmp_path: Path,
                                                             how: str) -> None:
    """Ctrl-C (or kill) in the middle of converting over an existing .edgt keeps the old file."""
    target = tmp_path / "out.edgt"
    shutil.copy(stories_edgt, target)
    old = _digest(target)
    # q8_0 re-quantization of SmolLM2 takes seconds: time enough to interrupt it mid-write.
    if how.startswith("api"):
        cmd = ["-c", f"from edgert.converters import convert; "
                     f"convert({str(SMOLLM2_GGUF)!r}, {str(target)!r}, quantize='q8_0', progress=False)"]
    else:
        cmd = ["-m", "edgert", "convert", str(SMOLLM2_GGUF), "-o", str(target), "--quantize", "q8_0"]
    # A shell starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN:
    # give the child the default disposition a terminal's Ctrl-C meets.
    proc = subprocess.Popen([sys.executable, *cmd], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    start = _tree(tmp_path)
    deadline = time.monotonic() + 120
    while _tree(tmp_path) == start and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the conversion ended before it could be interrupted"
    # Inside the tensor loop: the partial file has its first megabyte.
    while (sum(_tree(tmp_path).values()) - sum(start.values()) < (1 << 20) and proc.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.005)
    assert proc.poll() is None, "the conversion ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM if how.endswith("SIGTERM") else signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if how.startswith("api"):
        assert proc.returncode != 0 and "KeyboardInterrupt" in err
    else:
        assert proc.returncode == 130 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.edgt"], "a partial file was left"
    assert _digest(target) == old


def test_failed_conversion_leaves_the_old_output(stories_edgt: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.edgt"
    shutil.copy(stories_edgt, target)
    old = _digest(target)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(SMOLLM2_GGUF.read_bytes()[:3_000_000])  # metadata intact, tensors cut off
    with pytest.raises(ModelFormatError):
        convert(bad, target, progress=False)
    assert _digest(target) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf", "out.edgt"]


def test_conversion_replaces_the_old_output_atomically(stories_edgt: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.edgt"
    target.write_bytes(b"old contents")
    link = tmp_path / "link.edgt"
    link.symlink_to(target)
    out = convert(STORIES / "stories260K.bin", link, progress=False)
    assert out == link and link.is_symlink(), "a symlinked output stays a symlink"
    assert read_edgt(target).metadata["provenance"]["source_format"] == "llama2c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.edgt", "out.edgt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_archive_that_would_not_fit_is_refused_before_unpacking(tmp_path: Path, monkeypatch) -> None:
    """A wheel/zip member is unpacked to the temporary directory only if its declared size fits
    (zipfile never writes more than that), so a zip bomb cannot fill the disk."""
    from collections import namedtuple

    import converters
    whl = tmp_path / "m.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("m/x.gguf", b"GGUF" + bytes(1000))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(converters.shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(ModelFormatError, match="would unpack to 1,004 bytes but only 100 are free"):
        convert(whl, tmp_path / "o.edgt", progress=False)
