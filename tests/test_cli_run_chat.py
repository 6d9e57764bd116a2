"""`edgert run` and `edgert chat` as a user runs them (subprocesses outside the source tree):
prompts from a file or stdin, --stats, a .gguf opened directly, quiet exit into `| head`,
--json-schema, and chat's /system, /save, /load and a conversation that outgrows the context."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from conftest import SMOLLM2_GGUF


def edgert(*args: str, cwd: Path, stdin: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgert", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_run_reads_the_prompt_from_a_file_or_stdin(stories_edgt: Path, tmp_path: Path) -> None:
    direct = edgert("run", str(stories_edgt), "Once upon a time", "-n", "12", cwd=tmp_path)
    assert direct.returncode == 0 and direct.stdout.startswith(", there was a little girl")
    (tmp_path / "p.txt").write_text("Once upon a time")
    from_file = edgert("run", str(stories_edgt), "-f", "p.txt", "-n", "12", cwd=tmp_path)
    from_stdin = edgert("run", str(stories_edgt), "-n", "12", cwd=tmp_path, stdin="Once upon a time")
    dash = edgert("run", str(stories_edgt), "-", "-n", "12", cwd=tmp_path, stdin="Once upon a time")
    assert from_file.stdout == from_stdin.stdout == dash.stdout == direct.stdout
    # a prompt after the options, as before the prompt became optional
    late = edgert("run", str(stories_edgt), "-n", "12", "Once upon a time", cwd=tmp_path)
    assert late.stdout == direct.stdout
    stats = edgert("run", str(stories_edgt), "Once upon a time", "-n", "12", "--stats", cwd=tmp_path)
    assert "decode" in stats.stderr and "tok/s" in stats.stderr and stats.stdout == direct.stdout


def test_run_into_head_exits_quietly(stories_edgt: Path, tmp_path: Path) -> None:
    cmd = f"'{sys.executable}' -m edgert run '{stories_edgt}' 'Once upon a time' -n 400 | head -c 20"
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.stderr == "" and r.returncode == 0 and len(r.stdout) == 20


def test_run_accepts_a_gguf_and_caches_its_conversion(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    a = edgert("run", str(SMOLLM2_GGUF), "The capital of France is", "-n", "4", cwd=tmp_path, env=env)
    assert a.returncode == 0 and "Paris" in a.stdout and "converting" in a.stderr
    cached = list((tmp_path / "cache" / "edgert").glob("*.edgt"))
    assert len(cached) == 1
    b = edgert("run", str(SMOLLM2_GGUF), "The capital of France is", "-n", "4", cwd=tmp_path, env=env)
    assert b.stdout == a.stdout and "converting" not in b.stderr  # reused


def test_run_json_schema(smollm2_edgt: Path, tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 40}},
              "required": ["answer"], "additionalProperties": False}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    r = edgert("run", str(smollm2_edgt), "What is the capital of France?", "--chat", "-n", "40",
               "--json-schema", "s.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jsonschema.validate(json.loads(r.stdout), schema)


def test_chat_system_save_load_and_overflow(smollm2_edgt: Path, tmp_path: Path) -> None:
    common = ["chat", str(smollm2_edgt), "-n", "16", "--temp", "0", "--ctx", "256"]
    r = edgert(*common, cwd=tmp_path, stdin="/system You answer in one short sentence.\n"
               "What is the capital of France?\n/save conv.json\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout and "system prompt set" in r.stderr
    saved = json.loads((tmp_path / "conv.json").read_text())
    assert saved["system"].startswith("You answer") and len(saved["messages"]) == 2
    assert (tmp_path / "conv.json.kv").stat().st_size > 0
    # /load resumes with the KV cache; the next answer only evaluates the new turn
    r = edgert(*common, cwd=tmp_path, stdin="/load conv.json\nAnd of Italy?\n")
    assert r.returncode == 0 and "with its KV cache" in r.stderr, r.stderr
    assert "Rome" in r.stdout
    # a conversation longer than the 256-token context keeps going, oldest turns dropped
    lines = "".join(f"Tell me fact number {i} about the ocean, in detail.\n" for i in range(12))
    r = edgert(*common, cwd=tmp_path, stdin=lines)
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr
    assert "dropped" in r.stderr and len(r.stdout.strip().split("\n")) >= 12


def test_multiline_input(stories_edgt: Path, smollm2_edgt: Path, tmp_path: Path) -> None:
    r = edgert("chat", str(smollm2_edgt), "-n", "8", "--temp", "0", "--ctx", "256", cwd=tmp_path,
               stdin='"""\nline one\nline two\n"""\ncontinued \\\nline\n/save m.json\n')
    assert r.returncode == 0, r.stderr
    users = [m["content"] for m in json.loads((tmp_path / "m.json").read_text())["messages"]
             if m["role"] == "user"]
    assert users == ["line one\nline two", "continued \nline"]


def test_chat_uses_llama_cpp_defaults_without_generation_config(smollm2_edgt: Path, tmp_path: Path) -> None:
    r = edgert("chat", "--help", cwd=tmp_path)
    assert "0.8" in r.stdout and "generation_config" in r.stdout
    from edgert.defaults import LLAMA_CPP_DEFAULTS, sampling_defaults
    assert sampling_defaults({})[0] == LLAMA_CPP_DEFAULTS
    d, src = sampling_defaults({"generation_config": {"do_sample": True, "temperature": 0.6,
                                                      "top_p": 0.9}})
    assert d["temperature"] == 0.6 and d["top_p"] == 0.9 and "generation_config" in src
    assert sampling_defaults({"generation_config": {"do_sample": False}})[0]["temperature"] == 0.0


def test_ctrl_c_stops_the_answer_and_keeps_the_conversation(smollm2_edgt: Path, tmp_path: Path) -> None:
    import signal
    import time
    p = subprocess.Popen([sys.executable, "-m", "edgert", "chat", str(smollm2_edgt), "-n", "400",
                          "--temp", "0", "--ctx", "512"], cwd=tmp_path, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        p.stdin.write("Write a long story about a dragon.\n")
        p.stdin.flush()
        first = p.stdout.read(20)  # the answer is streaming
        assert first
        p.send_signal(signal.SIGINT)
        time.sleep(0.5)
        p.stdin.write("/save c.json\n/exit\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "(stopped)" in err
    messages = json.loads((tmp_path / "c.json").read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    answer = messages[1]["content"]
    assert answer.startswith(first) and len(answer) < 1500  # cut short, and kept


def test_hf_generation_config_is_carried_into_the_metadata(tmp_path: Path) -> None:
    import shutil
    from conftest import STORIES
    from edgert.converters import convert
    from edgert.model import Model
    src = tmp_path / "hf"
    shutil.copytree(STORIES / "hf", src)
    (src / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20}))
    with Model(convert(src, tmp_path / "m.edgt", progress=False)) as m:
        assert m.metadata["generation_config"] == {"do_sample": True, "temperature": 0.6,
                                                   "top_k": 20, "top_p": 0.9}
    (src / "generation_config.json").write_text(json.dumps({"bos_token_id": 1}))  # no sampling keys
    with Model(convert(src, tmp_path / "n.edgt", progress=False)) as m:
        assert "generation_config" not in m.metadata
