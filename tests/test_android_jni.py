"""The Android JNI bridge (android_demo/) built for the host and driven from a real JVM.

The Android SDK/NDK are not on the project's machines, but the bridge is plain JNI over edgert.h:
compiled against the host JDK's jni.h and the host libedgert.so it exercises the same code an app
runs. Greedy output must equal the Python API's token for token.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import edgert
from edgert.converters import convert

REPO = Path(__file__).resolve().parent.parent
JNI_SRC = REPO / "android_demo" / "app" / "src" / "main" / "cpp" / "edgert_jni.cpp"
JAVA_SRC = REPO / "android_demo" / "app" / "src" / "main" / "java" / "org" / "edgert"
STORIES_HF = REPO.parent / "shared" / "models" / "stories260K" / "hf"


def _java_home() -> Path:
    javac = shutil.which("javac")
    assert javac, "javac not found: install a JDK (Debian: openjdk-17-jdk-headless)"
    return Path(os.path.realpath(javac)).parent.parent


@pytest.fixture(scope="module")
def jni_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jni")
    build = out / "native"
    subprocess.run(["cmake", "-S", str(REPO / "native"), "-B", str(build), "-DEDGERT_BUILD_TESTS=OFF",
                    "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "edgert"], check=True,
                   capture_output=True)
    libs = list(build.rglob("libedgert.so"))
    assert libs, "libedgert.so was not built"
    jh = _java_home()
    subprocess.run(["g++", "-std=c++17", "-O2", "-shared", "-fPIC", str(JNI_SRC),
                    f"-I{REPO / 'native' / 'include'}", f"-I{jh / 'include'}",
                    f"-I{jh / 'include' / 'linux'}", f"-L{libs[0].parent}", "-ledgert",
                    f"-Wl,-rpath,{libs[0].parent}", "-o", str(out / "libedgert_jni.so")], check=True)
    classes = out / "classes"
    subprocess.run(["javac", "-d", str(classes), *map(str, JAVA_SRC.glob("*.java")),
                    str(REPO / "tests" / "jni" / "JniSmoke.java")], check=True)
    return out


def test_jni_bridge_matches_python(jni_build: Path, tmp_path: Path) -> None:
    model_path = convert(STORIES_HF, tmp_path / "stories.edgt", progress=False)
    corrupt = tmp_path / "corrupt.edgt"
    data = bytearray(model_path.read_bytes())
    data[20] ^= 0xFF  # inside the header: the header CRC must catch it
    corrupt.write_bytes(bytes(data))

    with edgert.LLM(model_path, n_ctx=256, n_threads=1) as llm:
        prompt = llm.tokenize("Once upon a time")
        expected = llm.generate_ids(prompt, max_tokens=16)
        vocab = llm.info.vocab_size

    proc = subprocess.run(
        ["java", f"-Djava.library.path={jni_build}", "-cp", str(jni_build / "classes"), "JniSmoke",
         str(model_path), str(corrupt), ",".join(map(str, prompt)), "16"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())

    assert [int(t) for t in lines["greedy"].split(",")] == expected
    n_returned, n_seen = map(int, lines["stopped"].split())
    assert n_seen == 3 and n_returned == 3, "the listener returning false must stop generation"
    assert int(lines["vocab"]) == vocab
    assert lines["metadata_has_tokenizer"] == "true"
    assert lines["bad_token"] == "EDGERT_ERR_TOKEN"
    assert lines["corrupt"] == "EDGERT_ERR_FORMAT"
