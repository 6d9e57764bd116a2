# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The sensor path's run-time core, in Cython: it calls a compiled model function through its
pointer with preallocated buffers (`Runner`), and streams samples into it (`WindowStream`).

A compiled model is `void f(void *const *inputs, void *const *outputs, void *workspace)` (see
codegen.py). `Runner` owns one workspace and one buffer per input and output, allocated once: a
call copies the window in, calls `f`, and returns a view of the same output buffer every time
(copy it to keep it past the next call). Nothing here imports LLVM: the function comes from a
shared library (ctypes) or from the JIT, as an address.

Nothing here imports numpy either, unless the caller hands it numpy arrays (then numpy is already
imported): a script on a small board can run a cached model with array.array / memoryview /
bytes-like inputs and never load numpy's ~30 MiB. The rule for what comes back is the input's
type: a numpy array in (or an object with `__array__`) gives numpy arrays out; any other input
(a buffer, a list) gives `memoryview`s with the output's format ("f", "b", "B", "i", "q") and
shape. Both are views of the same preallocated memory, so a call allocates nothing either way.

`WindowStream` is the streaming front end: a ring buffer of the last `window` samples (any chunk
size in), one window emitted every `hop` samples, per-channel normalisation and an optional
short-time magnitude spectrum computed in C loops, the model called per window without the GIL.
"""
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE, PyBUF_ND, PyBUF_STRIDES)
from libc.stdint cimport uintptr_t, int64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, calloc, free
from libc.math cimport sqrt, cos, sin, M_PI

import array
import sys

ctypedef void (*model_fn)(void** inputs, void** outputs, void* ws) noexcept nogil

# kind -> (struct / array.array code, item size, numpy dtype name)
_FORMATS = {"f32": ("f", 4, "float32"), "i8": ("b", 1, "int8"), "u8": ("B", 1, "uint8"),
            "i32": ("i", 4, "int32"), "i64": ("q", 8, "int64")}

cdef dict _MODULES = sys.modules
cdef object _NDARRAY = None
cdef bint _LITTLE = sys.byteorder == "little"
_PLAIN = (list, tuple, memoryview, bytes, bytearray, array.array)


cdef inline bint _is_ndarray(object x):
    """x is a numpy array, found without importing numpy (no numpy loaded: it cannot be one)."""
    global _NDARRAY
    if _NDARRAY is None:
        np = _MODULES.get("numpy")
        if np is None or getattr(np, "ndarray", None) is None:
            return False
        _NDARRAY = np.ndarray
    return isinstance(x, _NDARRAY)


cdef bint _wants_numpy(object x):
    """numpy in, numpy out: a numpy array, or another array library's object (`__array__`)."""
    return _is_ndarray(x) or (not isinstance(x, _PLAIN) and hasattr(type(x), "__array__"))


def _numpy():
    import numpy
    return numpy


cdef char _code(const char* f, Py_ssize_t itemsize):
    """The element code of a one-element buffer format in native sizes ('l' of 8 bytes is 'q'),
    0 for anything else (a struct, a non-native byte order)."""
    if f == NULL:
        return b'B'
    if f[0] == b'@' or f[0] == b'=' or (f[0] == b'<' and _LITTLE):
        f += 1
    if f[0] == 0 or f[1] != 0:
        return 0
    cdef char c = f[0]
    if c == b'l':
        return b'q' if itemsize == 8 else (b'i' if itemsize == 4 else 0)
    if c == b'L':
        return b'Q' if itemsize == 8 else (b'I' if itemsize == 4 else 0)
    return c


def _as_array(str code, x):
    """x's values as an array.array of `code` (the slow path: lists, nested lists, buffers of
    another element type). Conversions follow array.array's rules: an int fits a float, a float
    does not fit an int (TypeError), an out-of-range int is an OverflowError."""
    try:
        x = memoryview(x).tolist()
    except TypeError:
        pass  # not a buffer
    except NotImplementedError:
        raise TypeError(f"a buffer of format {memoryview(x).format!r} cannot be read; pass "
                        f"array.array({code!r}, ...) or a list") from None
    if not isinstance(x, (list, tuple)):
        try:
            return array.array(code, x)  # any other iterable
        except TypeError:
            return array.array(code, [x])  # a number
    try:
        return array.array(code, x)
    except TypeError:
        flat = []
        _flatten(x, flat)
        return array.array(code, flat)


cdef _flatten(x, list out):
    for v in x:
        if isinstance(v, (list, tuple)):
            _flatten(v, out)
        else:
            out.append(v)


cdef class Buffer:
    """A 64-byte aligned, zeroed block of memory with an element format and a shape, exported
    through the buffer protocol: `memoryview(b)` and `numpy.asarray(b)` are views of it."""
    cdef void* raw
    cdef char* data
    cdef readonly Py_ssize_t nbytes
    cdef readonly Py_ssize_t itemsize
    cdef readonly tuple shape
    cdef bytes _fmt
    cdef int ndim
    cdef Py_ssize_t* dims  # ndim shapes, then ndim strides

    def __cinit__(self, str fmt, Py_ssize_t itemsize, shape):
        self.raw = NULL
        self.dims = NULL
        self.shape = tuple(int(d) for d in shape)
        self.ndim = len(self.shape)
        self._fmt = fmt.encode()
        self.itemsize = itemsize
        cdef Py_ssize_t n = 1, i
        for d in self.shape:
            if d < 0:
                raise ValueError(f"negative dimension in {self.shape}")
            n *= d
        self.nbytes = n * itemsize
        self.raw = calloc(self.nbytes + 64, 1)
        self.dims = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (2 * self.ndim + 1))
        if self.raw == NULL or self.dims == NULL:
            raise MemoryError()
        self.data = <char*>(((<uintptr_t>self.raw) + 63) & ~(<uintptr_t>63))
        cdef Py_ssize_t stride = itemsize
        for i in range(self.ndim - 1, -1, -1):
            self.dims[i] = self.shape[i]
            self.dims[self.ndim + i] = stride
            stride *= self.shape[i]

    def __dealloc__(self):
        free(self.raw)
        free(self.dims)

    def __getbuffer__(self, Py_buffer* view, int flags):
        view.buf = self.data
        view.obj = self
        view.len = self.nbytes
        view.readonly = 0
        view.itemsize = self.itemsize
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = self._fmt  # bytes owned by self, which the view keeps alive
        view.ndim = self.ndim
        view.shape = self.dims if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.dims + self.ndim if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view):
        pass

    cdef inline void* ptr(self):
        return self.data


cdef Buffer _buffer(str kind, shape):
    code, size, _ = _FORMATS[kind]
    return Buffer(code, size, shape)


cdef class Runner:
    """Calls one compiled model with preallocated buffers. `m(x)` -> the output (reused): numpy
    array(s) for numpy input, memoryview(s) for any other input (see the file banner)."""
    cdef model_fn fn
    cdef void** in_ptrs
    cdef void** out_ptrs
    cdef Py_ssize_t n_in, n_out
    cdef Py_ssize_t* in_bytes
    cdef Py_ssize_t* out_bytes
    cdef char* in_fmt
    cdef Buffer _ws
    cdef void* ws_ptr
    cdef tuple _in_bufs
    cdef tuple _out_bufs
    cdef tuple _out_np
    cdef tuple _in_np
    cdef readonly tuple output_views
    cdef readonly tuple input_shapes
    cdef readonly tuple output_shapes
    cdef readonly tuple input_kinds
    cdef readonly tuple output_kinds
    cdef readonly tuple input_sizes
    cdef readonly tuple output_sizes
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
        cdef Buffer b
        ins, outs = [], []
        for i, (name, shape, kind) in enumerate(inputs):
            b = _buffer(kind, shape)
            ins.append(b)
            self.in_ptrs[i] = b.ptr()
            self.in_bytes[i] = b.nbytes
            self.in_fmt[i] = ord(_FORMATS[kind][0])
        for i, (name, shape, kind) in enumerate(outputs):
            b = _buffer(kind, shape)
            outs.append(b)
            self.out_ptrs[i] = b.ptr()
            self.out_bytes[i] = b.nbytes
        self._in_bufs = tuple(ins)
        self._out_bufs = tuple(outs)
        self.output_views = tuple(memoryview(b) for b in outs)
        self.input_shapes = tuple(tuple(s) for _, s, _ in inputs)
        self.output_shapes = tuple(tuple(s) for _, s, _ in outputs)
        self.input_kinds = tuple(k for _, _, k in inputs)
        self.output_kinds = tuple(k for _, _, k in outputs)
        self.input_sizes = tuple(b.nbytes // b.itemsize for b in ins)
        self.output_sizes = tuple(b.nbytes // b.itemsize for b in outs)
        # 64-byte aligned workspace (the code generator assumes it for its buffers)
        self._ws = Buffer("B", 1, (max(workspace_bytes, 64),))
        self.ws_ptr = self._ws.ptr()

    def __dealloc__(self):
        free(self.in_ptrs)
        free(self.out_ptrs)
        free(self.in_bytes)
        free(self.out_bytes)
        free(self.in_fmt)

    @property
    def output_arrays(self):
        """The output buffers as numpy arrays (what a numpy call returns; imports numpy)."""
        if self._out_np is None:
            np = _numpy()
            self._out_np = tuple(np.asarray(b) for b in self._out_bufs)
        return self._out_np

    @property
    def input_arrays(self):
        """The input buffers as numpy arrays (imports numpy)."""
        if self._in_np is None:
            np = _numpy()
            self._in_np = tuple(np.asarray(b) for b in self._in_bufs)
        return self._in_np

    cdef int _load_input(self, Py_ssize_t i, object x) except -1:
        """Copy x into input buffer i: a memcpy for a C-contiguous buffer of the model's element
        type and size (any shape with that many elements), a conversion otherwise. Returns 1 when
        x asks for numpy output."""
        cdef Py_buffer view
        cdef int fast = 0
        cdef int got = 0
        try:
            got = PyObject_GetBuffer(x, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0
        except (BufferError, ValueError, TypeError):
            got = 0  # not contiguous, or not a buffer: the slow path converts it
        if got:
            try:
                if (view.len == self.in_bytes[i] and
                        _code(view.format, view.itemsize) == self.in_fmt[i]):
                    memcpy(self.in_ptrs[i], view.buf, view.len)
                    fast = 1
            finally:
                PyBuffer_Release(&view)
        if fast:
            return _is_ndarray(x)
        return self._load_slow(i, x)

    def _load_slow(self, Py_ssize_t i, x):
        n = self.input_sizes[i]
        shape = self.input_shapes[i]
        if _wants_numpy(x):
            np = _numpy()
            dst = self.input_arrays[i]
            a = np.asarray(x)
            if a.size != n:
                raise ValueError(f"input {i} has {a.size} elements ({a.shape}); the model takes "
                                 f"{n} ({shape})")
            np.copyto(dst, a.reshape(dst.shape), casting="same_kind")
            return 1
        code = _FORMATS[self.input_kinds[i]][0]
        try:
            a = _as_array(code, x)
        except (TypeError, OverflowError) as e:
            raise type(e)(f"input {i}: {e} (the model takes {self.input_kinds[i]} {shape})") from None
        if len(a) != n:
            raise ValueError(f"input {i} has {len(a)} elements; the model takes {n} ({shape})")
        cdef Py_buffer view
        PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS)
        try:
            memcpy(self.in_ptrs[i], view.buf, self.in_bytes[i])
        finally:
            PyBuffer_Release(&view)
        return 0

    def __call__(self, *xs):
        """Run the model. Returns the preallocated output (a tuple of them for several outputs):
        numpy arrays when an input is a numpy array, memoryviews otherwise."""
        if len(xs) != self.n_in:
            raise TypeError(f"the model takes {self.n_in} input(s), got {len(xs)}")
        cdef Py_ssize_t i
        cdef int use_np = 0
        for i in range(self.n_in):
            use_np |= self._load_input(i, xs[i])
        self.fn(self.in_ptrs, self.out_ptrs, self.ws_ptr)
        outs = self.output_arrays if use_np else self.output_views
        if self.n_out == 1:
            return outs[0]
        return outs

    def run_batch(self, windows, out=None):
        """Run the model on each item of `windows` (one-input models): a [B, ...] array or buffer
        with the model's input size per item, a flat buffer of B x that many elements, or a list
        of B items. Returns [B, *output shape] per output: new numpy arrays for numpy input, new
        memoryviews otherwise; with `out` (writable C-contiguous buffers or arrays of the output
        type, B x the output size each) the results go there and `out` is returned."""
        if self.n_in != 1:
            raise TypeError("run_batch takes one-input models; call the model per item instead")
        cdef Py_ssize_t per = self.input_sizes[0], ib = self.in_bytes[0]
        kind = self.input_kinds[0]
        code = _FORMATS[kind][0]
        use_np = _wants_numpy(windows)
        src = windows
        cdef Py_buffer wv
        cdef int got = 0
        try:
            got = PyObject_GetBuffer(src, &wv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0
        except (BufferError, ValueError, TypeError):
            got = 0
        if got and _code(wv.format, wv.itemsize) != self.in_fmt[0]:
            PyBuffer_Release(&wv)
            got = 0
        if not got:  # convert: numpy's rules for numpy input, array.array's otherwise
            if use_np:
                np = _numpy()
                src = np.ascontiguousarray(windows, dtype=_FORMATS[kind][2])
            elif (isinstance(windows, (list, tuple)) and windows
                  and not isinstance(windows[0], (int, float))):
                items = []
                for bi, item in enumerate(windows):
                    a = _as_array(code, item)
                    if len(a) != per:
                        raise ValueError(f"windows item {bi} has {len(a)} elements; the model's "
                                         f"input {self.input_shapes[0]} has {per}")
                    items.append(a)
                src = array.array(code)
                for a in items:
                    src.extend(a)
                src = memoryview(src).cast("B").cast(code, (len(items), per))
            else:
                src = _as_array(code, windows)
            PyObject_GetBuffer(src, &wv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        cdef Py_ssize_t B, b, j, total
        cdef void** optrs = NULL
        cdef char** obase = NULL
        cdef Py_buffer* ov = NULL
        cdef Py_ssize_t n_ov = 0
        cdef void* ws = self.ws_ptr
        cdef void* inp[1]
        cdef char* wbase = <char*>wv.buf
        try:
            total = wv.len // wv.itemsize if wv.itemsize else 0
            if (wv.ndim == 0 or total % per or
                    (wv.ndim >= 2 and wv.shape[0] * per != total)):
                shape = tuple(wv.shape[k] for k in range(wv.ndim)) if wv.shape else (total,)
                raise ValueError(f"windows of shape {shape}: each item must have {per} elements "
                                 f"(the model's input is {self.input_shapes[0]})")
            B = total // per
            if out is None:
                if use_np:
                    np = _numpy()
                    outs = tuple(np.empty((B,) + self.output_shapes[j],
                                          dtype=_FORMATS[self.output_kinds[j]][2])
                                 for j in range(self.n_out))
                else:
                    outs = tuple(memoryview(_buffer(self.output_kinds[j],
                                                    (B,) + self.output_shapes[j]))
                                 for j in range(self.n_out))
            else:
                outs = out if isinstance(out, tuple) else (out,)
                if len(outs) != self.n_out:
                    raise ValueError(f"out: the model has {self.n_out} output(s), got {len(outs)}")
            optrs = <void**>malloc(sizeof(void*) * (self.n_out + 1))
            obase = <char**>malloc(sizeof(char*) * (self.n_out + 1))
            ov = <Py_buffer*>malloc(sizeof(Py_buffer) * (self.n_out + 1))
            if optrs == NULL or obase == NULL or ov == NULL:
                raise MemoryError()
            for j in range(self.n_out):
                oshape = (B,) + self.output_shapes[j]
                okind = self.output_kinds[j]
                try:
                    PyObject_GetBuffer(outs[j], &ov[j],
                                       PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
                except (BufferError, ValueError, TypeError):
                    raise ValueError(f"out[{j}] must be a writable C-contiguous {okind} array "
                                     f"or buffer of shape {oshape}") from None
                n_ov += 1
                if (ov[j].len != B * self.out_bytes[j] or
                        _code(ov[j].format, ov[j].itemsize) != ord(_FORMATS[okind][0])):
                    raise ValueError(f"out[{j}] must be a writable C-contiguous {okind} array "
                                     f"or buffer of shape {oshape}")
                obase[j] = <char*>ov[j].buf
            with nogil:
                for b in range(B):
                    inp[0] = wbase + b * ib
                    for j in range(self.n_out):
                        optrs[j] = obase[j] + b * self.out_bytes[j]
                    self.fn(inp, optrs, ws)
        finally:
            for j in range(n_ov):
                PyBuffer_Release(&ov[j])
            PyBuffer_Release(&wv)
            free(optrs)
            free(obase)
            free(ov)
        if out is not None:
            return out
        return outs[0] if self.n_out == 1 else outs


cdef class WindowStream:
    """Samples in (any chunk size), one model output per window out.

    push(chunk) takes [n, channels] float samples (or a flat [n x channels], channels
    interleaved) and returns [k, output size] float32 for the k windows that completed inside the
    chunk: a new numpy array for a numpy chunk, a new memoryview otherwise. A window is
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
        if runner.input_sizes[0] != self.in_size:
            raise ValueError(f"the model's input {runner.input_shapes[0]} has "
                             f"{runner.input_sizes[0]} elements; window {window} x "
                             f"{channels} channel(s){' as a spectrum' if spectrum else ''} "
                             f"gives {self.in_size}")
        self.out_size = runner.output_sizes[0]
        self.ring = <float*>malloc(sizeof(float) * window * channels)
        self.frame = <float*>malloc(sizeof(float) * window)
        self.mean = <float*>malloc(sizeof(float) * channels)
        self.inv_std = <float*>malloc(sizeof(float) * channels)
        if not (self.ring and self.frame and self.mean and self.inv_std):
            raise MemoryError()
        m = _per_channel(mean, channels, 0.0, "mean")
        s = _per_channel(std, channels, 1.0, "std")
        if not all(v > 0 for v in s):
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
        """Feed samples; returns [k, output size] float32 for the windows completed (numpy for a
        numpy chunk, a memoryview otherwise)."""
        use_np = _wants_numpy(chunk)
        src = chunk
        if use_np:
            np = _numpy()
            src = np.ascontiguousarray(chunk, dtype=np.float32)
        cdef Py_buffer xv
        cdef int got = 0
        try:
            got = PyObject_GetBuffer(src, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0
        except (BufferError, ValueError, TypeError):
            got = 0
        if got and _code(xv.format, xv.itemsize) != b'f':
            PyBuffer_Release(&xv)
            got = 0
        if not got:
            src = _as_array("f", chunk)
            PyObject_GetBuffer(src, &xv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        cdef Py_buffer rv
        cdef int got_r = 0
        cdef Py_ssize_t n = 0, i, total
        cdef int64_t last
        cdef Py_ssize_t k = 0
        cdef const float* xp = <const float*>xv.buf
        cdef float* res = NULL
        cdef Py_ssize_t row = 0
        cdef int C = self.channels, W = self.window
        try:
            total = xv.len // 4
            if (xv.ndim > 2 or xv.ndim == 0 or total % C or
                    (xv.ndim == 2 and xv.shape[1] != C)):
                shape = tuple(xv.shape[j] for j in range(xv.ndim)) if xv.shape else (total,)
                raise ValueError(f"a chunk is [n, {self.channels}] samples (or n x "
                                 f"{self.channels} interleaved); got shape {shape}")
            n = total // C
            # windows completing at sample counts seen+1 .. seen+n
            last = self.seen + n
            if last >= self.next_emit:
                k = (last - self.next_emit) // self.hop + 1
            if use_np:
                result = _numpy().empty((k, self.out_size), dtype="float32")
            else:
                result = memoryview(Buffer("f", 4, (k, self.out_size)))
            if k:
                PyObject_GetBuffer(result, &rv, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
                got_r = 1
                res = <float*>rv.buf
            with nogil:
                for i in range(n):
                    memcpy(&self.ring[self.head * C], &xp[i * C], C * sizeof(float))
                    self.head += 1
                    if self.head == W:
                        self.head = 0
                    self.seen += 1
                    if self.seen == self.next_emit:
                        self._emit(&res[row * self.out_size])
                        row += 1
                        self.next_emit += self.hop
        finally:
            if got_r:
                PyBuffer_Release(&rv)
            PyBuffer_Release(&xv)
        return result


def _per_channel(v, int channels, double default, str name):
    """A per-channel constant: None (the default), one number, or one value per channel."""
    if v is None:
        return [default] * channels
    vals = [float(t) for t in _as_array("d", v)]
    if len(vals) == 1:
        return vals * channels
    if len(vals) != channels:
        raise ValueError(f"{name} has {len(vals)} values; the stream has {channels} channel(s)")
    return vals
