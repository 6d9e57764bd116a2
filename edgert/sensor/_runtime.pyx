# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The sensor path's run-time core, in Cython: it calls a compiled model function through its
pointer with preallocated buffers (`Runner`), and streams samples into it (`WindowStream`).

A compiled model is `void f(void *const *inputs, void *const *outputs, void *workspace)` (see
codegen.py). `Runner` owns one workspace and one buffer per input and output, allocated once: a
call copies the window in, calls `f`, and returns the same output array every time (copy it to
keep it past the next call). Nothing here imports LLVM: the function comes from a shared library
(ctypes) or from the JIT, as an address.

`WindowStream` is the streaming front end: a ring buffer of the last `window` samples (any chunk
size in), one window emitted every `hop` samples, per-channel normalisation and an optional
short-time magnitude spectrum computed in C loops, the model called per window without the GIL.
"""
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT
from libc.stdint cimport uintptr_t, int64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, free
from libc.math cimport sqrt, cos, sin, M_PI

import numpy as np

ctypedef void (*model_fn)(void** inputs, void** outputs, void* ws) noexcept nogil

_FORMATS = {"f32": ("f", np.float32), "i8": ("b", np.int8), "u8": ("B", np.uint8),
            "i32": ("i", np.int32), "i64": ("q", np.int64)}


cdef class Runner:
    """Calls one compiled model with preallocated buffers. `m(x)` -> output array (reused)."""
    cdef model_fn fn
    cdef void** in_ptrs
    cdef void** out_ptrs
    cdef Py_ssize_t n_in, n_out
    cdef Py_ssize_t* in_bytes
    cdef Py_ssize_t* out_bytes
    cdef char* in_fmt
    cdef object _ws
    cdef void* ws_ptr
    cdef readonly tuple input_arrays
    cdef readonly tuple output_arrays
    cdef readonly tuple input_shapes
    cdef readonly tuple output_shapes
    cdef readonly tuple input_kinds
    cdef readonly tuple output_kinds
    cdef public object owner

    def __cinit__(self, *args, **kwargs):
        self.in_ptrs = NULL
        self.out_ptrs = NULL
        self.in_bytes = NULL
        self.out_bytes = NULL
        self.in_fmt = NULL

    def __init__(self, uintptr_t address, inputs, outputs, Py_ssize_t workspace_bytes, owner=None):
        """inputs/outputs: sequences of (name, shape, kind) with kind in f32/i8/u8/i32/i64."""
        if address == 0:
            raise ValueError("the compiled model's function address is 0")
        self.fn = <model_fn><void*>address
        self.owner = owner
        self.n_in = len(inputs)
        self.n_out = len(outputs)
        self.in_ptrs = <void**>malloc(sizeof(void*) * (self.n_in + 1))
        self.out_ptrs = <void**>malloc(sizeof(void*) * (self.n_out + 1))
        self.in_bytes = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (self.n_in + 1))
        self.out_bytes = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (self.n_out + 1))
        self.in_fmt = <char*>malloc(self.n_in + 1)
        if not (self.in_ptrs and self.out_ptrs and self.in_bytes and self.out_bytes and self.in_fmt):
            raise MemoryError()
        ins, outs = [], []
        for i, (name, shape, kind) in enumerate(inputs):
            a = np.zeros(tuple(shape), dtype=_FORMATS[kind][1])
            ins.append(a)
            self.in_ptrs[i] = <void*><uintptr_t>a.ctypes.data
            self.in_bytes[i] = a.nbytes
            self.in_fmt[i] = ord(_FORMATS[kind][0])
        for i, (name, shape, kind) in enumerate(outputs):
            a = np.zeros(tuple(shape), dtype=_FORMATS[kind][1])
            outs.append(a)
            self.out_ptrs[i] = <void*><uintptr_t>a.ctypes.data
            self.out_bytes[i] = a.nbytes
        self.input_arrays = tuple(ins)
        self.output_arrays = tuple(outs)
        self.input_shapes = tuple(tuple(s) for _, s, _ in inputs)
        self.output_shapes = tuple(tuple(s) for _, s, _ in outputs)
        self.input_kinds = tuple(k for _, _, k in inputs)
        self.output_kinds = tuple(k for _, _, k in outputs)
        # 64-byte aligned workspace (the code generator assumes it for its buffers)
        self._ws = np.zeros(max(workspace_bytes, 64) + 64, dtype=np.uint8)
        cdef uintptr_t p = <uintptr_t>self._ws.ctypes.data
        self.ws_ptr = <void*>((p + 63) & ~(<uintptr_t>63))

    def __dealloc__(self):
        free(self.in_ptrs)
        free(self.out_ptrs)
        free(self.in_bytes)
        free(self.out_bytes)
        free(self.in_fmt)

    cdef int _load_input(self, Py_ssize_t i, object x) except -1:
        """Copy x into input buffer i: a fast path for a C-contiguous array of the right type and
        size (any shape with that many elements), numpy's conversion rules otherwise."""
        cdef Py_buffer view
        cdef int fast = 0
        cdef int got = 0
        try:
            got = PyObject_GetBuffer(x, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0
        except (BufferError, ValueError, TypeError):
            got = 0  # not contiguous, or not a buffer: the slow path converts it
        if got:
            try:
                if (view.len == self.in_bytes[i] and view.format != NULL and
                        view.format[0] == self.in_fmt[i] and view.format[1] == 0):
                    memcpy(self.in_ptrs[i], view.buf, view.len)
                    fast = 1
            finally:
                PyBuffer_Release(&view)
        if not fast:
            self._load_slow(i, x)
        return 0

    def _load_slow(self, Py_ssize_t i, x):
        dst = self.input_arrays[i]
        a = np.asarray(x)
        if a.size != dst.size:
            raise ValueError(f"input {i} has {a.size} elements ({a.shape}); the model takes "
                             f"{dst.size} ({dst.shape})")
        np.copyto(dst, a.reshape(dst.shape), casting="same_kind")

    def __call__(self, *xs):
        if len(xs) != self.n_in:
            raise TypeError(f"the model takes {self.n_in} input(s), got {len(xs)}")
        cdef Py_ssize_t i
        for i in range(self.n_in):
            self._load_input(i, xs[i])
        self.fn(self.in_ptrs, self.out_ptrs, self.ws_ptr)
        if self.n_out == 1:
            return self.output_arrays[0]
        return self.output_arrays

    def run_batch(self, windows, out=None):
        """Run the model on each item of `windows` ([B, ...] with the model's input size per item,
        one-input models). Returns [B, *output shape] per output (new arrays unless `out`)."""
        if self.n_in != 1:
            raise TypeError("run_batch takes one-input models; call the model per item instead")
        dtype = self.input_arrays[0].dtype
        w = np.ascontiguousarray(windows, dtype=dtype)
        per = self.input_arrays[0].size
        if w.ndim == 0 or w.size % per or (w.shape[0] and w.size // w.shape[0] != per):
            raise ValueError(f"windows of shape {w.shape}: each item must have {per} elements "
                             f"(the model's input is {self.input_shapes[0]})")
        cdef Py_ssize_t B = w.shape[0], b, j
        outs = out if out is not None else tuple(
            np.empty((B,) + self.output_shapes[j], dtype=self.output_arrays[j].dtype)
            for j in range(self.n_out))
        if not isinstance(outs, tuple):
            outs = (outs,)
        for j in range(self.n_out):
            o = outs[j]
            if (o.shape != (B,) + self.output_shapes[j] or not o.flags.c_contiguous
                    or o.dtype != self.output_arrays[j].dtype):
                raise ValueError(f"out[{j}] must be a C-contiguous {self.output_arrays[j].dtype} "
                                 f"array of shape {(B,) + self.output_shapes[j]}")
        cdef char* wbase = <char*><uintptr_t>w.ctypes.data
        cdef Py_ssize_t ib = self.in_bytes[0]
        cdef void** optrs = <void**>malloc(sizeof(void*) * (self.n_out + 1))
        cdef char** obase = <char**>malloc(sizeof(char*) * (self.n_out + 1))
        cdef void* ws = self.ws_ptr
        cdef void* inp[1]
        try:
            for j in range(self.n_out):
                obase[j] = <char*><uintptr_t>outs[j].ctypes.data
            with nogil:
                for b in range(B):
                    inp[0] = wbase + b * ib
                    for j in range(self.n_out):
                        optrs[j] = obase[j] + b * self.out_bytes[j]
                    self.fn(inp, optrs, ws)
        finally:
            free(optrs)
            free(obase)
        return outs[0] if self.n_out == 1 else outs


cdef class WindowStream:
    """Samples in (any chunk size), one model output per window out.

    push(chunk) takes [n, channels] (or [n] for one channel) float samples and returns a
    [k, output size] float32 array for the k windows that completed inside the chunk. A window is
    the last `window` samples, emitted every `hop` samples once the first `window` have arrived.
    Each channel is normalised as (x - mean[c]) / std[c]. With spectrum=True the model gets, per
    channel, the Hann-windowed magnitude spectrum |rfft| (window // 2 + 1 bins) instead.
    layout "cw" feeds the model [channels, time]; "wc" feeds [time, channels].
    """
    cdef Runner runner
    cdef int window, hop, channels, cw, spectrum, nbins
    cdef float* ring
    cdef float* frame
    cdef float* mean
    cdef float* inv_std
    cdef float* hann
    cdef float* cos_t
    cdef float* sin_t
    cdef Py_ssize_t head
    cdef int64_t seen, next_emit
    cdef readonly Py_ssize_t out_size
    cdef readonly Py_ssize_t in_size

    def __cinit__(self, *args, **kwargs):
        self.ring = NULL
        self.frame = NULL
        self.mean = NULL
        self.inv_std = NULL
        self.hann = NULL
        self.cos_t = NULL
        self.sin_t = NULL

    def __init__(self, Runner runner, int window, int hop, int channels=1, mean=None, std=None,
                 bint spectrum=False, str layout="cw"):
        if window <= 0 or hop <= 0 or channels <= 0:
            raise ValueError("window, hop and channels must be positive")
        if runner.n_in != 1 or runner.input_kinds[0] != "f32" or runner.output_kinds[0] != "f32":
            raise ValueError("streaming needs a model with one float32 input and float32 output")
        if layout not in ("cw", "wc"):
            raise ValueError("layout is 'cw' (channels, time) or 'wc' (time, channels)")
        self.runner = runner
        self.window, self.hop, self.channels = window, hop, channels
        self.cw = layout == "cw"
        self.spectrum = spectrum
        self.nbins = window // 2 + 1
        per_ch = self.nbins if spectrum else window
        self.in_size = per_ch * channels
        if runner.input_arrays[0].size != self.in_size:
            raise ValueError(f"the model's input {runner.input_shapes[0]} has "
                             f"{runner.input_arrays[0].size} elements; window {window} x "
                             f"{channels} channel(s){' as a spectrum' if spectrum else ''} "
                             f"gives {self.in_size}")
        self.out_size = runner.output_arrays[0].size
        self.ring = <float*>malloc(sizeof(float) * window * channels)
        self.frame = <float*>malloc(sizeof(float) * window)
        self.mean = <float*>malloc(sizeof(float) * channels)
        self.inv_std = <float*>malloc(sizeof(float) * channels)
        if not (self.ring and self.frame and self.mean and self.inv_std):
            raise MemoryError()
        m = np.zeros(channels, np.float64) if mean is None else \
            np.broadcast_to(np.asarray(mean, np.float64), (channels,))
        s = np.ones(channels, np.float64) if std is None else \
            np.broadcast_to(np.asarray(std, np.float64), (channels,))
        if (s <= 0).any():
            raise ValueError("std must be > 0 for every channel")
        cdef int c, j, k
        for c in range(channels):
            self.mean[c] = m[c]
            self.inv_std[c] = 1.0 / s[c]
        if spectrum:
            self.hann = <float*>malloc(sizeof(float) * window)
            self.cos_t = <float*>malloc(sizeof(float) * window * self.nbins)
            self.sin_t = <float*>malloc(sizeof(float) * window * self.nbins)
            if not (self.hann and self.cos_t and self.sin_t):
                raise MemoryError()
            for j in range(window):
                self.hann[j] = 0.5 - 0.5 * cos(2.0 * M_PI * j / window)  # periodic Hann
            for k in range(self.nbins):
                for j in range(window):
                    self.cos_t[k * window + j] = cos(2.0 * M_PI * ((<int64_t>k * j) % window) / window)
                    self.sin_t[k * window + j] = sin(2.0 * M_PI * ((<int64_t>k * j) % window) / window)
        self.reset()

    def __dealloc__(self):
        free(self.ring)
        free(self.frame)
        free(self.mean)
        free(self.inv_std)
        free(self.hann)
        free(self.cos_t)
        free(self.sin_t)

    def reset(self):
        """Forget every sample seen (the next window needs `window` new samples)."""
        self.head = 0
        self.seen = 0
        self.next_emit = self.window

    @property
    def samples_seen(self):
        return self.seen

    cdef void _emit(self, float* out_row) noexcept nogil:
        cdef int W = self.window, C = self.channels, c, j, k
        cdef float* inp = <float*>self.runner.in_ptrs[0]
        cdef float v, re, im
        cdef Py_ssize_t src
        for c in range(C):
            # oldest sample first: the ring's write position is the oldest slot
            for j in range(W):
                src = self.head + j
                if src >= W:
                    src -= W
                v = (self.ring[src * C + c] - self.mean[c]) * self.inv_std[c]
                if self.spectrum:
                    self.frame[j] = v * self.hann[j]
                elif self.cw:
                    inp[c * W + j] = v
                else:
                    inp[j * C + c] = v
            if self.spectrum:
                for k in range(self.nbins):
                    re = 0
                    im = 0
                    for j in range(W):
                        re += self.frame[j] * self.cos_t[k * W + j]
                        im -= self.frame[j] * self.sin_t[k * W + j]
                    if self.cw:
                        inp[c * self.nbins + k] = sqrt(re * re + im * im)
                    else:
                        inp[k * C + c] = sqrt(re * re + im * im)
        self.runner.fn(self.runner.in_ptrs, self.runner.out_ptrs, self.runner.ws_ptr)
        memcpy(out_row, self.runner.out_ptrs[0], self.out_size * sizeof(float))

    def push(self, chunk):
        """Feed samples; returns [k, output size] float32 for the windows completed."""
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim == 1 and self.channels == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"a chunk is [n, {self.channels}] samples; got shape {np.shape(chunk)}")
        cdef Py_ssize_t n = x.shape[0], i
        # windows completing at sample counts seen+1 .. seen+n
        cdef int64_t last = self.seen + n
        cdef Py_ssize_t k = 0
        if last >= self.next_emit:
            k = (last - self.next_emit) // self.hop + 1
        result = np.empty((k, self.out_size), dtype=np.float32)
        if n == 0:
            return result
        cdef float[:, ::1] xv = x
        cdef float* res = <float*><uintptr_t>result.ctypes.data if k else NULL
        cdef Py_ssize_t row = 0
        cdef int C = self.channels, W = self.window
        with nogil:
            for i in range(n):
                memcpy(&self.ring[self.head * C], &xv[i, 0], C * sizeof(float))
                self.head += 1
                if self.head == W:
                    self.head = 0
                self.seen += 1
                if self.seen == self.next_emit:
                    self._emit(&res[row * self.out_size])
                    row += 1
                    self.next_emit += self.hop
        return result
