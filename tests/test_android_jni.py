"""The Android JNI bridge (android_demo/) built for the host and driven from a real JVM.

The Android SDK/NDK are not on the project's machines, but the bridge is plain JNI over edgert.h:
compiled against the host JDK's jni.h and the host libedgert.so it exercises the same code an app
runs. Greedy output must equal the Python API's token for token, and text in / streamed text
out (native tokenizer, chat template) must equal the Python API's text. The demo app's logic
(org.edgert.demo.ChatSession, which MainActivity only wires to widgets) runs here too: blank
input, a missing model and a model without a chat template end as messages on its screen, not
as exceptions on the worker thread.
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
                    str(JAVA_SRC / "demo" / "ChatSession.java"),
                    str(REPO / "tests" / "jni" / "JniSmoke.java")], check=True)
    return out


TEXT = "héllo wörld 😀 中文"
QUESTION = "What is the capital of France? Answer in one sentence."


def test_jni_bridge_matches_python(jni_build: Path, tmp_path: Path, smollm2_edgt: Path) -> None:
    model_path = convert(STORIES_HF, tmp_path / "stories.edgt", progress=False)
    corrupt = tmp_path / "corrupt.edgt"
    data = bytearray(model_path.read_bytes())
    data[20] ^= 0xFF  # inside the header: the header CRC must catch it
    corrupt.write_bytes(bytes(data))

    with edgert.LLM(model_path, n_ctx=256, n_threads=1) as llm:
        prompt = llm.tokenize("Once upon a time")
        expected = llm.generate_ids(prompt, max_tokens=16)
        vocab = llm.info.vocab_size
        text = llm.generate("Once upon a time", max_tokens=16)
        ids = llm.tokenize(TEXT, add_bos=False)
    with edgert.LLM(smollm2_edgt, n_ctx=512, n_threads=1) as llm:
        answer = llm.chat([{"role": "user", "content": QUESTION}], max_tokens=12)

    proc = subprocess.run(
        ["java", f"-Djava.library.path={jni_build}", "-cp", str(jni_build / "classes"), "JniSmoke",
         str(model_path), str(corrupt), ",".join(map(str, prompt)), "16", "Once upon a time", TEXT,
         str(smollm2_edgt), QUESTION],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())

    assert [int(t) for t in lines["greedy"].split(",")] == expected
    n_returned, n_seen = map(int, lines["stopped"].split())
    assert n_seen == 3 and n_returned == 3, "the listener returning false must stop generation"
    assert int(lines["vocab"]) == vocab
    assert lines["metadata_has_tokenizer"] == "true"
    assert lines["bad_token"] == "EDGERT_ERR_TOKEN"
    assert lines["corrupt"] == "EDGERT_ERR_FORMAT"

    assert lines["text_hex"] == f"{text.encode().hex()} 16"
    assert [int(t) for t in lines["tokenize"].split(",")] == ids
    assert lines["roundtrip_hex"] == TEXT.encode().hex()
    assert lines["chat_error"] == "EDGERT_ERR_UNSUPPORTED"  # stories260K has no chat template
    assert lines["listener_exception"] == "listener_failed"
    assert lines["session_blank"] == "E:Type_a_message_first."
    assert lines["session_missing"] == "true"
    assert lines["session_no_template"].startswith("E:EDGERT_ERR_UNSUPPORTED")
    assert lines["session_chat_hex"] == (answer + "\n").encode().hex()


AARCH64_GXX = "aarch64-linux-gnu-g++"


@pytest.mark.slow
def test_jni_bridge_on_aarch64_under_qemu(tmp_path: Path, stories_edgt: Path) -> None:
    """The same bridge and libedgert cross-built for arm64 (what an Android phone loads; the NDK
    is not on these machines, Debian's aarch64 cross compiler stands in), driven by a Java-free
    C driver (tests/jni/jni_driver.c) under qemu-aarch64. Results must equal x86-64 Python's."""
    for tool in (AARCH64_GXX, "qemu-aarch64"):
        assert shutil.which(tool), f"{tool} not found: apt-get install g++-aarch64-linux-gnu qemu-user"
    build = tmp_path / "arm64"
    subprocess.run(["cmake", "-S", str(REPO / "native"), "-B", str(build),
                    f"-DCMAKE_TOOLCHAIN_FILE={REPO / 'native' / 'cross' / 'aarch64-toolchain.cmake'}",
                    "-DEDGERT_BUILD_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"], check=True, capture_output=True)
    r = subprocess.run(["nice", "cmake", "--build", str(build), "-j2", "--target", "edgert"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jh = _java_home()
    jni = [f"-I{jh / 'include'}", f"-I{jh / 'include' / 'linux'}", f"-I{REPO / 'native' / 'include'}"]
    subprocess.run([AARCH64_GXX, "-std=c++17", "-O2", "-shared", "-fPIC", str(JNI_SRC), *jni,
                    f"-L{build}", "-ledgert", "-o", str(build / "libedgert_jni.so")], check=True)
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", str(REPO / "tests" / "jni" / "jni_driver.c"), *jni,
                    f"-L{build}", "-ledgert_jni", "-ledgert", "-o", str(build / "jni_driver")], check=True)
    with edgert.LLM(stories_edgt, n_ctx=256, n_threads=1) as llm:
        text = llm.generate("Once upon a time", max_tokens=12)
        ids = llm.tokenize(TEXT, add_bos=False)
        greedy = llm.generate_ids(llm.tokenize("Once upon a time"), 12)
    r = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(build / "jni_driver"),
                        str(stories_edgt), "12", "Once upon a time", TEXT],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LD_LIBRARY_PATH": str(build)})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert [int(t) for t in lines["tokenize"].split(",")] == ids
    assert lines["roundtrip_hex"] == TEXT.encode().hex()
    assert lines["text_hex"] == f"{text.encode().hex()} 12"
    assert [int(t) for t in lines["greedy"].split(",")] == greedy
    assert lines["bad_token"] == "EDGERT_ERR_TOKEN"
    assert lines["chat_error"] == "EDGERT_ERR_UNSUPPORTED"
