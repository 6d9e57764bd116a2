"""`edgert.sensor.compile`: ONNX file -> a native callable, through an on-disk cache.

Pipeline (first start): read + check + fold (graph.py) -> rewrite (optimize.py) -> LLVM IR
(codegen.py + ops.py) -> optimise for the host CPU at O3 and emit an object file (llvmlite) ->
link it into a shared library with the system C compiler when there is one, else load the object
with MCJIT -> `_runtime.Runner`, which calls it with preallocated buffers.

Cache: `$EDGERT_SENSOR_CACHE` or `~/.cache/edgert/sensor/<key>/` with `model.so` (or `model.o`)
and `meta.json`. The key hashes the model bytes, the compile options, the code generator's version and
the CPU's identity and feature flags, so a copied cache never runs code built
for another CPU. A cached start reads and hashes the file and dlopens the library: it imports
neither onnx nor llvmlite (that is what keeps it under 50 ms and the process small).
`cached(model, ...)` answers from the cache only (None on a miss): `edgert sensor run` asks it
first, so it needs the extra only when it has to compile.

AOT (`target="aarch64-linux-gnu"`): the same module built for that triple, written as
`<name>.o`, `<name>.so` (when the cross compiler `aarch64-linux-gnu-gcc` is installed) and
`<name>.h` (the entry point, shapes and workspace size) for a C program on the board.
`target="aarch64-linux-gnu+dotprod"` opts in to the dot-product extension (armv8.2-a+dotprod:
Cortex-A55/A75/A76 and later, not A53/A72): dtype="int8" GEMMs then use SDOT; the default
aarch64 target stays plain armv8-a NEON.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..errors import InvalidArgumentError, ModelFormatError, UnsupportedModelError
from .source import ModelSource, read_model_bytes

CODEGEN_VERSION = "6"
SYMBOL = "edgert_model"
TARGETS = {
    "host": None,
    "aarch64-linux-gnu": ("aarch64-unknown-linux-gnu", "generic", "+neon"),
    "aarch64-linux-gnu+dotprod": ("aarch64-unknown-linux-gnu", "generic", "+neon,+dotprod"),
    "x86_64-linux-gnu": ("x86_64-unknown-linux-gnu", "x86-64", ""),
}
CROSS_CC = {"aarch64-linux-gnu": "aarch64-linux-gnu-gcc",
            "aarch64-linux-gnu+dotprod": "aarch64-linux-gnu-gcc", "x86_64-linux-gnu": "cc"}


def cache_root() -> Path:
    env = os.environ.get("EDGERT_SENSOR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgert" / "sensor"


_CPU_ID: Optional[str] = None


def _sha256(data: bytes) -> Any:
    # CPython's own SHA-256 where it has one: hashlib would map OpenSSL's libcrypto (~3.6 MiB of
    # resident memory) into a process that only needs to look up its cache entry.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found, no-redef]
        except ImportError:
            from hashlib import sha256  # type: ignore[no-redef]
    return sha256(data)


def cpu_fingerprint() -> str:
    """The CPU's identity and feature flags, read without LLVM (so a cached start stays light)."""
    global _CPU_ID
    if _CPU_ID is None:
        if hasattr(os, "uname"):  # platform.machine()'s answer without importing platform (~1 MiB)
            parts = [os.uname().machine]
        else:  # pragma: no cover - not POSIX
            import platform
            parts = [platform.machine()]
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 16)
            for key in ("vendor_id", "model name", "flags", "Features", "CPU implementer",
                        "CPU part"):
                for line in text.splitlines():
                    if line.split(":")[0].strip() == key:
                        parts.append(line.split(":", 1)[1].strip())
                        break
        except OSError:
            import platform
            parts.append(platform.processor())
        _CPU_ID = _sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _CPU_ID


def _cache_key(data: bytes, options: Mapping[str, Any]) -> str:
    # Not the llvmlite version: finding it costs a metadata scan on every cached start, and code
    # another LLVM built for this CPU is still right. CODEGEN_VERSION covers our own changes.
    h = _sha256(_sha256(data).digest())
    h.update(json.dumps({"options": options, "codegen": CODEGEN_VERSION,
                         "cpu": cpu_fingerprint()}, sort_keys=True).encode())
    return h.hexdigest()[:32]


class _Record:
    """A plain record: fields from __slots__, repr and == as a dataclass has them. Not a
    dataclass because `dataclasses` imports inspect, ast and dis: ~1.5 MiB of resident memory in
    a cached start, which imports this file."""
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment] - mutable, like a dataclass with eq


class CompileInfo(_Record):
    """How a model was obtained: from the cache or compiled, in how long, from where."""
    __slots__ = ("cache_hit", "seconds", "path", "loader", "ops")

    def __init__(self, cache_hit: bool, seconds: float, path: str = "", loader: str = "",
                 ops: Optional[dict[str, int]] = None) -> None:
        self.cache_hit = cache_hit
        self.seconds = seconds
        self.path = path
        self.loader = loader          # "shared-library" | "mcjit"
        self.ops: dict[str, int] = {} if ops is None else ops


def _runner_class() -> Any:
    try:
        from . import _runtime
    except ImportError as e:  # pragma: no cover - a broken install
        raise ImportError(f"edgert.sensor's compiled runtime is missing ({e}); reinstall edgert "
                          f"with `pip install \"edgert[sensor]\"`") from None
    return _runtime.Runner


def _make_model_class() -> Any:
    Runner = _runner_class()

    class CompiledModel(Runner):  # type: ignore[misc, valid-type]
        """A compiled ONNX model: `out = m(window)` (the same preallocated output every call:
        a numpy array for numpy input, a memoryview for any other buffer or list; copy it to keep
        it), `m.run_batch(windows)`. One instance per thread."""
        backend = "llvm"
        info: CompileInfo
        input_names: list[str]
        output_names: list[str]

        def __repr__(self) -> str:
            return (f"<CompiledModel {self.input_shapes} -> {self.output_shapes} "
                    f"({self.info.loader}, {'cached' if self.info.cache_hit else 'compiled'} "
                    f"in {self.info.seconds * 1e3:.1f} ms)>")
    return CompiledModel


_MODEL_CLASS: Any = None


def _wrap(address: int, meta: dict[str, Any], owner: Any, info: CompileInfo) -> Any:
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _make_model_class()
    m = _MODEL_CLASS(address, [tuple(x) for x in meta["inputs"]],
                     [tuple(x) for x in meta["outputs"]], int(meta["workspace_bytes"]), owner)
    m.info = info
    m.input_names = [x[0] for x in meta["inputs"]]
    m.output_names = [x[0] for x in meta["outputs"]]
    return m


def _load_shared(path: Path, meta: dict[str, Any]) -> tuple[int, Any]:
    import ctypes
    lib = ctypes.CDLL(str(path))
    fn = getattr(lib, meta["symbol"])
    return int(ctypes.cast(fn, ctypes.c_void_p).value or 0), lib


class _McjitOwner:
    """Keeps the MCJIT engine (and so the code) alive as long as the model."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine


def _load_object_mcjit(obj: bytes, symbol: str) -> tuple[int, Any]:
    llvm = _llvm()
    tm = _target_machine(None)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return int(engine.get_function_address(symbol)), _McjitOwner(engine)


_LLVM_READY = False


def _llvm() -> Any:
    global _LLVM_READY
    try:
        import llvmlite.binding as llvm
    except ImportError:
        raise ImportError('edgert.sensor needs llvmlite to compile a model: '
                          'pip install "edgert[sensor]"') from None
    if not _LLVM_READY:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        try:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
        except Exception:  # noqa: BLE001 - older llvmlite: native only
            pass
        _LLVM_READY = True
    return llvm


def _target_machine(target: Optional[str], cpu: Optional[str] = None) -> Any:
    llvm = _llvm()
    if target is None or target == "host":
        triple = llvm.get_process_triple()
        cpu_name = cpu or llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features().flatten() if cpu is None else ""

    else:
        triple, cpu_name, features = TARGETS[target]
        cpu_name = cpu or cpu_name
    t = llvm.Target.from_triple(triple)
    return t.create_target_machine(cpu=cpu_name, features=features, opt=3, reloc="pic",
                                   codemodel="default")


def _optimise(ir_text: str, tm: Any) -> Any:
    llvm = _llvm()
    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = False  # full unrolling of the static loops tripled compile time
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def _host_vector_width(cpu: Optional[str]) -> int:
    """16 floats per vector where the host has AVX-512 (and the user did not pin a CPU)."""
    if cpu is not None or os.environ.get("EDGERT_SENSOR_VECTOR_WIDTH") == "8":
        return 8
    return 16 if _llvm().get_host_cpu_features().get("avx512f", False) else 8


def _host_int8_dot(cpu: Optional[str]) -> str:
    """"vnni512" where the host has AVX-512 VNNI and BW, "sdot" where it is aarch64 with the
    dot-product extension (and the user did not pin a CPU or ask for
    EDGERT_SENSOR_INT8_DOT=generic), else "generic"."""
    if cpu is not None or os.environ.get("EDGERT_SENSOR_INT8_DOT") == "generic":
        return "generic"
    llvm = _llvm()
    f = llvm.get_host_cpu_features()
    if llvm.get_process_triple().startswith(("aarch64", "arm64")):
        return "sdot" if f.get("dotprod", False) else "generic"
    if os.environ.get("EDGERT_SENSOR_VECTOR_WIDTH") == "8":
        return "generic"
    return "vnni512" if f.get("avx512vnni", False) and f.get("avx512bw", False) else "generic"


def _aot_int8_dot(target: str) -> str:
    """"sdot" for an AOT target whose features include the aarch64 dot-product extension
    (unless EDGERT_SENSOR_INT8_DOT=generic), else "generic"."""
    spec = TARGETS[target]
    if spec is None or os.environ.get("EDGERT_SENSOR_INT8_DOT") == "generic":
        return "generic"
    triple, _, features = spec
    return "sdot" if triple.startswith("aarch64") and "+dotprod" in features.split(",") \
        else "generic"


def _lower(data: bytes, input_shapes: Optional[Mapping[str, Sequence[int]]], dtype: str,
           fuse: bool, vector_width: int = 8, int8_dot: str = "generic") -> tuple[str, Any]:
    from .codegen import build_module
    from .graph import read_graph
    from .optimize import optimize
    from .quant import prepare as quant_prepare
    keep = frozenset({"DequantizeLinear"}) if dtype == "int8" else frozenset()
    g = read_graph(None, input_shapes, data=data, keep=keep)  # type: ignore[arg-type]
    quant_prepare(g, dtype)
    optimize(g, fuse=fuse)
    return build_module(g, SYMBOL, int8=dtype == "int8", vector_width=vector_width,
                        int8_dot=int8_dot)


def _link_shared(obj_path: Path, so_path: Path, cc: Optional[str]) -> bool:
    import subprocess
    if not cc:
        return False
    r = subprocess.run([cc, "-shared", "-o", str(so_path), str(obj_path), "-lm"],
                       capture_output=True, text=True)
    return r.returncode == 0


def _host_cc() -> Optional[str]:
    import shutil
    env = os.environ.get("EDGERT_SENSOR_CC")
    if env is not None:
        return env or None  # EDGERT_SENSOR_CC= (empty) forces the MCJIT loader
    for c in ("cc", "gcc", "clang"):
        p = shutil.which(c)
        if p:
            return p
    return None


def _check_options(target: str, dtype: str, fallback: Optional[str]) -> None:
    if target not in TARGETS:
        raise InvalidArgumentError(f"target {target!r}: one of {sorted(TARGETS)}")
    if dtype not in ("f32", "int8"):
        raise InvalidArgumentError(f"dtype {dtype!r}: 'f32' or 'int8'")
    if fallback not in (None, "onnxruntime"):
        raise InvalidArgumentError(f"fallback {fallback!r}: None or 'onnxruntime'")


def compile(model: ModelSource, *, target: str = "host", dtype: str = "f32",  # noqa: A001
            input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
            fallback: Optional[str] = None, cache: bool = True, fuse: bool = True,
            loader: str = "auto", output_dir: Optional[str | os.PathLike] = None,
            cpu: Optional[str] = None) -> Any:
    """Compile an ONNX model for this CPU (or, with another `target`, write an AOT library).

    model: a path or the model's bytes. dtype: "f32" computes in float (Q/DQ nodes are applied as
    float rounding steps); "int8" runs QuantizeLinear -> DequantizeLinear -> MatMul/Gemm/Conv
    patterns and the QLinear ops with int8 x int8 -> int32 arithmetic. input_shapes pins symbolic
    input dims. fallback="onnxruntime" returns an onnxruntime-backed model with the same interface
    when the graph uses something the compiler does not support (an op, a dynamic shape).
    loader: "auto" (shared library when a C compiler is present, else MCJIT), "so", "mcjit".
    Raises ModelFormatError for a malformed model, UnsupportedModelError for an unsupported one.
    """
    _check_options(target, dtype, fallback)
    if loader not in ("auto", "so", "mcjit"):
        raise InvalidArgumentError(f"loader {loader!r}: 'auto', 'so' or 'mcjit'")
    t0 = time.perf_counter()
    data = read_model_bytes(model)
    if target != "host":
        return _compile_aot(data, target, dtype, input_shapes, fuse, output_dir, cpu,
                            name=Path(model).stem if not isinstance(model, (bytes, bytearray,
                                                                            memoryview))
                            else "model")
    entry = _cache_entry(data, dtype, input_shapes, fuse, loader, cpu)
    if cache:
        hit = _load_cached(entry, t0)
        if hit is not None:
            return hit
    # a cache miss from here on: shutil and tempfile (with random, bz2, lzma) cost a cached start
    # ~1 MiB of resident memory, so they are imported only now
    import shutil
    import tempfile
    try:
        ir_text, sig = _lower(data, input_shapes, dtype, fuse, _host_vector_width(cpu),
                              _host_int8_dot(cpu))
    except UnsupportedModelError as e:
        if fallback == "onnxruntime":
            from .fallback import OrtModel
            return OrtModel(data, input_shapes, reason=str(e))
        raise
    tm = _target_machine(None, cpu)
    mod = _optimise(ir_text, tm)
    obj = tm.emit_object(mod)
    meta = {"symbol": sig.symbol, "inputs": [list(x[:1]) + [list(x[1]), x[2]] for x in sig.inputs],
            "outputs": [list(x[:1]) + [list(x[1]), x[2]] for x in sig.outputs],
            "workspace_bytes": sig.workspace_bytes, "ops": sig.ops,
            "codegen": CODEGEN_VERSION, "target": "host"}
    cc = _host_cc() if loader in ("auto", "so") else None
    if loader == "so" and not cc:
        raise InvalidArgumentError("loader='so' needs a C compiler (cc) to link the library")
    tmp = Path(tempfile.mkdtemp(prefix="edgert-sensor-"))
    try:
        (tmp / "model.o").write_bytes(obj)
        linked = _link_shared(tmp / "model.o", tmp / "model.so", cc)
        meta["loader"] = "shared-library" if linked else "mcjit"
        (tmp / "meta.json").write_text(json.dumps(meta))
        if cache:
            final = _publish(tmp, entry)
        else:
            final = tmp
        if linked:
            addr, owner = _load_shared(final / "model.so", meta)
        else:
            addr, owner = _load_object_mcjit(obj, sig.symbol)
    finally:
        if not cache:
            pass  # the library stays mapped; the temp dir is removed when the model goes
        elif tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    info = CompileInfo(False, time.perf_counter() - t0, str(final), meta["loader"], sig.ops)
    m = _wrap(addr, meta, owner, info)
    if not cache:
        import weakref
        weakref.finalize(m, shutil.rmtree, str(tmp), True)
    return m


def _cache_entry(data: bytes, dtype: str, input_shapes: Optional[Mapping[str, Sequence[int]]],
                 fuse: bool, loader: str, cpu: Optional[str]) -> Path:
    options = {"dtype": dtype, "input_shapes": {k: list(map(int, v)) for k, v in
                                                (input_shapes or {}).items()},
               "fuse": fuse, "loader": loader, "cpu": cpu,
               "kernels": os.environ.get("EDGERT_SENSOR_KERNELS", "tiled"),
               "vector_width": os.environ.get("EDGERT_SENSOR_VECTOR_WIDTH", "auto"),
               "int8_dot": os.environ.get("EDGERT_SENSOR_INT8_DOT", "auto")}
    return cache_root() / _cache_key(data, options)


def cached(model: ModelSource, *, dtype: str = "f32",
           input_shapes: Optional[Mapping[str, Sequence[int]]] = None, fuse: bool = True,
           loader: str = "auto", cpu: Optional[str] = None) -> Optional[Any]:
    """What `compile(model, ...)` with the same options returns when the cache has it, else None
    (nothing is compiled: a caller that can do without onnx and llvmlite asks this first)."""
    _check_options("host", dtype, None)
    t0 = time.perf_counter()
    return _load_cached(_cache_entry(read_model_bytes(model), dtype, input_shapes, fuse, loader,
                                     cpu), t0)


def _publish(tmp: Path, entry: Path) -> Path:
    import shutil
    entry.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, entry)
        return entry
    except OSError:
        if (entry / "meta.json").exists():  # another process won the race: use its copy
            return entry
        shutil.copytree(tmp, entry, dirs_exist_ok=True)
        return entry


def _load_cached(entry: Path, t0: float) -> Optional[Any]:
    meta_path = entry / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("codegen") != CODEGEN_VERSION:
            return None
        if meta.get("loader") == "shared-library" and (entry / "model.so").exists():
            addr, owner = _load_shared(entry / "model.so", meta)
        elif (entry / "model.o").exists():
            addr, owner = _load_object_mcjit((entry / "model.o").read_bytes(), meta["symbol"])
        else:
            return None
    except (OSError, ValueError, KeyError, AttributeError):
        return None  # a damaged entry is rebuilt
    info = CompileInfo(True, time.perf_counter() - t0, str(entry), meta["loader"],
                       meta.get("ops", {}))
    return _wrap(addr, meta, owner, info)


def load(library: str | os.PathLike) -> Any:
    """Load a compiled model library (`<name>.so` with its `<name>.json` beside it, as written by
    an AOT compile for this machine's architecture) without LLVM or onnx."""
    lib = Path(library)
    meta = json.loads(lib.with_suffix(".json").read_text())
    t0 = time.perf_counter()
    addr, owner = _load_shared(lib, meta)
    return _wrap(addr, meta, owner, CompileInfo(True, time.perf_counter() - t0, str(lib),
                                                "shared-library", meta.get("ops", {})))


class AotArtifact(_Record):
    """What an AOT compile wrote: link `object` (or load `library`) and include `header`."""
    __slots__ = ("target", "object", "header", "meta", "library", "symbol", "workspace_bytes")

    def __init__(self, target: str, object: Path, header: Path, meta: Path,  # noqa: A002
                 library: Optional[Path], symbol: str, workspace_bytes: int) -> None:
        self.target = target
        self.object = object
        self.header = header
        self.meta = meta
        self.library = library
        self.symbol = symbol
        self.workspace_bytes = workspace_bytes


def _c_ident(s: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in s).upper()
    return out if out and not out[0].isdigit() else "T_" + out


def _compile_aot(data: bytes, target: str, dtype: str,
                 input_shapes: Optional[Mapping[str, Sequence[int]]], fuse: bool,
                 output_dir: Optional[str | os.PathLike], cpu: Optional[str],
                 name: str) -> AotArtifact:
    import shutil
    if output_dir is None:
        raise InvalidArgumentError("an AOT compile (target other than 'host') needs output_dir")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ir_text, sig = _lower(data, input_shapes, dtype, fuse, int8_dot=_aot_int8_dot(target))
    tm = _target_machine(target, cpu)
    mod = _optimise(ir_text, tm)
    obj = tm.emit_object(mod)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "model"
    obj_path, h_path, meta_path = out / f"{stem}.o", out / f"{stem}.h", out / f"{stem}.json"
    obj_path.write_bytes(obj)
    meta = {"symbol": sig.symbol, "inputs": [[x[0], list(x[1]), x[2]] for x in sig.inputs],
            "outputs": [[x[0], list(x[1]), x[2]] for x in sig.outputs],
            "workspace_bytes": sig.workspace_bytes, "ops": sig.ops, "codegen": CODEGEN_VERSION,
            "target": target}
    meta_path.write_text(json.dumps(meta, indent=1))
    lines = [f"/* {stem}.h: generated by edgert.sensor for {target}. The model is one function:",
             " * inputs/outputs are arrays of pointers to contiguous tensors (shapes below),",
             f" * workspace is {sig.workspace_bytes} bytes, 64-byte aligned, owned by the caller",
             " * (one per concurrent call). Link the .o (with -lm) or load the .so. */",
             "#pragma once", "#include <stdint.h>", "#ifdef __cplusplus", 'extern "C" {', "#endif",
             f"void {sig.symbol}(void *const *inputs, void *const *outputs, void *workspace);",
             f"extern const uint64_t {sig.symbol}_workspace_bytes;",
             f"#define EDGERT_MODEL_WORKSPACE_BYTES {sig.workspace_bytes}u",
             f"#define EDGERT_MODEL_NUM_INPUTS {len(sig.inputs)}",
             f"#define EDGERT_MODEL_NUM_OUTPUTS {len(sig.outputs)}"]
    for kind, items in (("INPUT", sig.inputs), ("OUTPUT", sig.outputs)):
        for i, (tname, shape, k) in enumerate(items):
            lines.append(f"#define EDGERT_MODEL_{kind}{i}_ELEMENTS {math.prod(shape)}  "
                         f"/* {tname}: {k} {list(shape)} */")
    lines += ["#ifdef __cplusplus", "}", "#endif", ""]
    h_path.write_text("\n".join(lines))
    lib: Optional[Path] = None
    cc = shutil.which(CROSS_CC.get(target, ""))
    if cc and _link_shared(obj_path, out / f"{stem}.so", cc):
        lib = out / f"{stem}.so"
    return AotArtifact(target, obj_path, h_path, meta_path, lib, sig.symbol, sig.workspace_bytes)
