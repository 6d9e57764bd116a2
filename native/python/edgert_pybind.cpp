// edgert_pybind.cpp — edgert._edgert, the thin pybind11 layer over edgert.h.
//
// Mirrors the C API one to one (edgert_X -> _edgert.X) and calls nothing but edgert.h, so the
// Python package exercises exactly the ABI that mobile apps embed. What it adds is only what
// Python needs to be safe:
//   - handles own their native object and free it once (explicit *_free or garbage collection);
//     a context keeps its model alive, so freeing a model first can never leave a dangling pointer;
//   - a per-handle mutex, because edgert.h lets one thread at a time use a context or sampler and
//     Python threads run concurrently here (the GIL is released during eval/generate);
//   - status codes become the typed exceptions of edgert/errors.py (STATUS_TO_ERROR), with
//     edgert_last_error() as the message; a missing model path becomes FileNotFoundError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "edgert.h"

namespace py = pybind11;

namespace {

py::object error_class(int status) {
    py::module_ errors = py::module_::import("edgert.errors");
    return errors.attr("STATUS_TO_ERROR").attr("get")(status, errors.attr("EdgertError"));
}

[[noreturn]] void raise_error(int status, const std::string& message) {
    py::object cls = error_class(status);
    PyErr_SetObject(cls.ptr(), py::str(message).ptr());
    throw py::error_already_set();
}

// Must run on the thread that made the failed call, before any other edgert call: the message
// lives in edgert's per-thread error slot.
[[noreturn]] void raise_status(edgert_status status) {
    std::string message = edgert_last_error();
    if (message.empty()) message = edgert_status_string(status);
    raise_error(static_cast<int>(status), message);
}

void check(edgert_status status) {
    if (status != EDGERT_OK) raise_status(status);
}

// Token ids arrive as any integer sequence or array. They are range-checked against int32 here
// because a silent numpy cast would wrap 2**32 + 5 into the valid id 5.
std::vector<int32_t> to_token_vector(const py::handle& tokens) {
    py::array arr = py::array::ensure(tokens);
    if (!arr) throw py::type_error("token ids must be a sequence of integers or an integer array");
    if (arr.ndim() > 1) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "token ids must be one-dimensional");
    if (arr.size() == 0) return {};
    const char kind = arr.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw py::type_error("token ids must be integers, got an array of dtype " +
                             py::str(arr.dtype()).cast<std::string>());
    auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    // uint64 values >= 2**63 wrap into negatives here, which the range check below rejects.
    std::vector<int32_t> out(static_cast<size_t>(wide.size()));
    const int64_t* p = wide.data();
    for (size_t i = 0; i < out.size(); ++i) {
        if (p[i] < std::numeric_limits<int32_t>::min() || p[i] > std::numeric_limits<int32_t>::max())
            raise_error(EDGERT_ERR_TOKEN, "token id " + std::to_string(p[i]) + " at position " +
                                              std::to_string(i) +
                                              " is not a valid id; ids lie in [0, vocab_size)");
        out[i] = static_cast<int32_t>(p[i]);
    }
    return out;
}

// A float32 buffer the caller owns; edgert writes into it without a copy.
float* writable_f32(const py::array& arr, py::ssize_t need, const char* what) {
    if (!py::isinstance<py::array_t<float>>(arr) || arr.dtype().kind() != 'f' || arr.itemsize() != 4)
        throw py::type_error(std::string(what) + " must be a numpy float32 array");
    if (!(arr.flags() & py::array::c_style) || !arr.writeable())
        raise_error(EDGERT_ERR_INVALID_ARGUMENT,
                    std::string(what) + " must be C-contiguous and writable; use np.empty(n, np.float32)");
    if (arr.size() < need)
        raise_error(EDGERT_ERR_INVALID_ARGUMENT,
                    std::string(what) + " holds " + std::to_string(arr.size()) + " floats but " +
                        std::to_string(need) + " are needed");
    return static_cast<float*>(const_cast<void*>(arr.data()));
}

struct ModelBox {
    edgert_model* ptr = nullptr;
    int32_t n_vocab = 0;
    ~ModelBox() { edgert_model_free(ptr); }
};

struct Model {
    std::shared_ptr<ModelBox> box;
    const std::shared_ptr<ModelBox>& get() const {
        if (!box) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the model was freed; load it again");
        return box;
    }
};

struct Context {
    std::shared_ptr<ModelBox> model;  // keeps the weights mapped while this context lives
    edgert_context* ptr = nullptr;
    std::mutex mu;
    ~Context() { edgert_context_free(ptr); }
    edgert_context* get() const {
        if (!ptr) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the context was freed; create a new one");
        return ptr;
    }
};

struct Sampler {
    edgert_sampler* ptr = nullptr;
    std::mutex mu;
    ~Sampler() { edgert_sampler_free(ptr); }
    edgert_sampler* get() const {
        if (!ptr) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the sampler was freed; create a new one");
        return ptr;
    }
};

bool path_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

std::shared_ptr<Model> model_load(const std::string& path, const edgert_model_params* params) {
    edgert_model_params p = params ? *params : edgert_model_default_params();
    edgert_model* m = nullptr;
    edgert_status st;
    {
        py::gil_scoped_release nogil;
        st = edgert_model_load(path.c_str(), &p, &m);
    }
    if (st == EDGERT_ERR_IO && !path_exists(path)) {
        py::object exc = py::module_::import("builtins").attr("FileNotFoundError")(
            ENOENT, std::string("no model file at this path; convert one with `edgert convert`"), path);
        PyErr_SetObject(PyExc_FileNotFoundError, exc.ptr());
        throw py::error_already_set();
    }
    check(st);
    auto box = std::make_shared<ModelBox>();
    box->ptr = m;
    edgert_model_info info;
    check(edgert_model_get_info(m, &info));
    box->n_vocab = info.vocab_size;
    auto model = std::make_shared<Model>();
    model->box = std::move(box);
    return model;
}

py::dict model_get_layout(const Model& model) {
    edgert_model_layout l;
    std::memset(&l, 0, sizeof l);
    check(edgert_model_get_layout(model.get()->ptr, &l));
    py::dict d;
    d["isa"] = std::string(l.isa, strnlen(l.isa, sizeof l.isa));
    d["bytes"] = l.bytes;
    d["seconds"] = l.seconds;
    return d;
}

py::dict model_get_info(const Model& model) {
    edgert_model_info i;
    std::memset(&i, 0, sizeof i);
    check(edgert_model_get_info(model.get()->ptr, &i));
    py::dict d;
    d["architecture"] = std::string(i.architecture, strnlen(i.architecture, sizeof i.architecture));
    d["name"] = std::string(i.name, strnlen(i.name, sizeof i.name));
    d["format_version"] = i.format_version;
    d["vocab_size"] = i.vocab_size;
    d["hidden_size"] = i.hidden_size;
    d["intermediate_size"] = i.intermediate_size;
    d["num_layers"] = i.num_layers;
    d["num_heads"] = i.num_heads;
    d["num_kv_heads"] = i.num_kv_heads;
    d["head_dim"] = i.head_dim;
    d["context_length"] = i.context_length;
    d["bos_token_id"] = i.bos_token_id;
    d["eos_token_id"] = i.eos_token_id;
    d["rope_theta"] = i.rope_theta;
    d["rms_norm_eps"] = i.rms_norm_eps;
    d["n_params"] = i.n_params;
    d["file_size"] = i.file_size;
    d["weights_size"] = i.weights_size;
    return d;
}

std::string model_metadata_json(const Model& model) {
    size_t n = 0;
    const char* s = edgert_model_metadata_json(model.get()->ptr, &n);
    if (!s) raise_status(EDGERT_ERR_INVALID_ARGUMENT);
    return std::string(s, n);
}

std::shared_ptr<Context> context_new(const Model& model, const edgert_context_params* params) {
    const auto& box = model.get();
    edgert_context_params p = params ? *params : edgert_context_default_params();
    edgert_context* c = nullptr;
    edgert_status st;
    {
        py::gil_scoped_release nogil;  // allocating a large KV cache can take a while
        st = edgert_context_new(box->ptr, &p, &c);
    }
    check(st);
    auto ctx = std::make_shared<Context>();
    ctx->model = box;
    ctx->ptr = c;
    return ctx;
}

void context_free(Context& ctx) {
    py::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(ctx.mu);
    edgert_context_free(ctx.ptr);
    ctx.ptr = nullptr;
    ctx.model.reset();
}

void eval(Context& ctx, const py::handle& tokens, const py::object& logits, bool all_logits) {
    std::vector<int32_t> ids = to_token_vector(tokens);
    edgert_context* c = ctx.get();
    float* out = nullptr;
    if (!logits.is_none()) {
        py::ssize_t need = static_cast<py::ssize_t>(ctx.model->n_vocab) *
                           (all_logits ? static_cast<py::ssize_t>(ids.size()) : 1);
        out = writable_f32(py::reinterpret_borrow<py::array>(logits), need, "logits");
    }
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(ctx.mu);
        st = edgert_eval(c, ids.data(), static_cast<int32_t>(ids.size()), out, all_logits ? 1 : 0);
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
}

// edgert_eval_batch: one decode step of several contexts in one pass; returns [n, vocab] logits.
py::array_t<float> eval_batch(const std::vector<std::shared_ptr<Context>>& ctxs, const py::handle& tokens) {
    std::vector<int32_t> ids = to_token_vector(tokens);
    if (ctxs.empty() || ids.size() != ctxs.size()) {
        raise_error(EDGERT_ERR_INVALID_ARGUMENT, "eval_batch needs one token per context (got " +
                                                     std::to_string(ids.size()) + " tokens for " +
                                                     std::to_string(ctxs.size()) + " contexts)");
    }
    std::vector<edgert_context*> handles;
    for (const auto& c : ctxs) {
        if (!c) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "a context is None");
        handles.push_back(c->get());
    }
    const py::ssize_t vocab = ctxs[0]->model->n_vocab;
    py::array_t<float> out({static_cast<py::ssize_t>(ids.size()), vocab});
    float* dst = out.mutable_data();
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;
        // Every context locked for the pass, in address order (no deadlock with another batch);
        // a context given twice is refused by the C API, so lock it once.
        std::vector<Context*> order;
        for (const auto& c : ctxs) order.push_back(c.get());
        std::sort(order.begin(), order.end());
        order.erase(std::unique(order.begin(), order.end()), order.end());
        std::vector<std::unique_lock<std::mutex>> locks;
        for (Context* c : order) locks.emplace_back(c->mu);
        st = edgert_eval_batch(handles.data(), ids.data(), static_cast<int32_t>(ids.size()), dst);
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
    return out;
}

void context_save(Context& ctx, const std::string& path) {
    edgert_context* c = ctx.get();
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;  // writes the whole KV cache
        std::lock_guard<std::mutex> lock(ctx.mu);
        st = edgert_context_save(c, path.c_str());
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
}

void context_load(Context& ctx, const std::string& path) {
    edgert_context* c = ctx.get();
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(ctx.mu);
        st = edgert_context_load(c, path.c_str());
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (st == EDGERT_ERR_IO && !path_exists(path)) {
        py::object exc = py::module_::import("builtins").attr("FileNotFoundError")(
            ENOENT, std::string("no saved state at this path"), path);
        PyErr_SetObject(PyExc_FileNotFoundError, exc.ptr());
        throw py::error_already_set();
    }
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
}

std::vector<int32_t> context_tokens(Context& ctx) {
    edgert_context* c = ctx.get();
    std::lock_guard<std::mutex> lock(ctx.mu);
    std::vector<int32_t> out(static_cast<size_t>(edgert_context_tokens(c, nullptr, 0)));
    const int32_t n = edgert_context_tokens(c, out.data(), static_cast<int32_t>(out.size()));
    out.resize(static_cast<size_t>(n) < out.size() ? static_cast<size_t>(n) : out.size());
    return out;
}

std::shared_ptr<Sampler> sampler_new(const edgert_sampler_params* params) {
    edgert_sampler_params p = params ? *params : edgert_sampler_default_params();
    edgert_sampler* s = nullptr;
    check(edgert_sampler_new(&p, &s));
    auto smp = std::make_shared<Sampler>();
    smp->ptr = s;
    return smp;
}

void sampler_free(Sampler& smp) {
    std::lock_guard<std::mutex> lock(smp.mu);
    edgert_sampler_free(smp.ptr);
    smp.ptr = nullptr;
}

using LogitsArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using MaskArray = py::array_t<uint32_t, py::array::c_style>;

LogitsArray logits_of(const py::array& logits) {
    auto arr = LogitsArray::ensure(logits);
    if (!arr || arr.ndim() != 1 || arr.size() == 0)
        raise_error(EDGERT_ERR_INVALID_ARGUMENT, "logits must be a non-empty 1-D float32 array");
    return arr;
}

// A grammar engine's bitmask (int32 or uint32 words, bit t % 32 of word t / 32 = token t
// allowed), viewed without a copy: the words are reinterpreted as uint32, never converted.
std::optional<MaskArray> mask_of(const py::object& mask) {
    if (mask.is_none()) return std::nullopt;
    py::array arr = py::array::ensure(mask);
    if (!arr || arr.ndim() != 1 || arr.itemsize() != 4 ||
        (arr.dtype().kind() != 'i' && arr.dtype().kind() != 'u'))
        throw py::type_error("the token mask must be a 1-D int32 or uint32 array of bitmask words");
    if (!(arr.flags() & py::array::c_style))
        raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the token mask must be C-contiguous");
    return MaskArray(arr.attr("view")(py::dtype::of<uint32_t>()));
}

int32_t sampler_sample(Sampler& smp, const py::array& logits, const py::object& mask) {
    edgert_sampler* s = smp.get();
    LogitsArray arr = logits_of(logits);
    const std::optional<MaskArray> words = mask_of(mask);
    int32_t token = -1;
    std::lock_guard<std::mutex> lock(smp.mu);
    check(edgert_sampler_sample_masked(s, arr.data(), static_cast<int32_t>(arr.size()),
                                       words ? words->data() : nullptr,
                                       words ? static_cast<int32_t>(words->size()) : 0, &token));
    return token;
}

py::array_t<float> sampler_probs(Sampler& smp, const py::array& logits, const py::object& mask) {
    edgert_sampler* s = smp.get();
    LogitsArray arr = logits_of(logits);
    const std::optional<MaskArray> words = mask_of(mask);
    py::array_t<float> out(arr.size());
    std::lock_guard<std::mutex> lock(smp.mu);
    check(edgert_sampler_probs(s, arr.data(), static_cast<int32_t>(arr.size()),
                               words ? words->data() : nullptr,
                               words ? static_cast<int32_t>(words->size()) : 0, out.mutable_data()));
    return out;
}

// The Python callable behind edgert_token_callback. Its exception (KeyboardInterrupt included)
// stops generation and is re-raised once edgert_generate has returned and the GIL is held again.
struct CallbackState {
    py::object fn;
    std::exception_ptr error;
};

int32_t callback_trampoline(int32_t token, void* user_data) {
    auto* state = static_cast<CallbackState*>(user_data);
    py::gil_scoped_acquire gil;
    try {
        // A builtin callback (list.append) runs no bytecode, so Ctrl-C would wait for the end.
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        py::object r = state->fn(token);
        return (!r.is_none() && r.cast<bool>()) ? 1 : 0;
    } catch (...) {
        state->error = std::current_exception();
        return 1;
    }
}

int32_t generate(Context& ctx, Sampler& smp, const py::handle& prompt, int32_t max_new_tokens,
                 const py::handle& stop_tokens, const py::object& callback) {
    std::vector<int32_t> ids = to_token_vector(prompt);
    std::vector<int32_t> stops = stop_tokens.is_none() ? std::vector<int32_t>{} : to_token_vector(stop_tokens);
    edgert_context* c = ctx.get();
    edgert_sampler* s = smp.get();
    CallbackState state{callback, nullptr};
    int32_t n_generated = 0;
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;
        std::lock(ctx.mu, smp.mu);
        std::lock_guard<std::mutex> lc(ctx.mu, std::adopt_lock);
        std::lock_guard<std::mutex> ls(smp.mu, std::adopt_lock);
        st = edgert_generate(c, s, ids.data(), static_cast<int32_t>(ids.size()), max_new_tokens,
                             stops.data(), static_cast<int32_t>(stops.size()),
                             callback.is_none() ? nullptr : callback_trampoline, &state, &n_generated);
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (state.error) std::rethrow_exception(state.error);
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
    return n_generated;
}

// ---- text (ABI 2) ---------------------------------------------------------------------------
// Text arrives as str (encoded here with surrogatepass, so a lone surrogate reaches edgert as the
// invalid UTF-8 it is and fails with EDGERT_ERR_INVALID_TEXT) or as bytes, passed unchanged.
std::string to_utf8(const py::handle& text, const char* what) {
    if (py::isinstance<py::bytes>(text)) return text.cast<std::string>();
    if (py::isinstance<py::str>(text)) {
        py::object b = py::reinterpret_steal<py::object>(
            PyUnicode_AsEncodedString(text.ptr(), "utf-8", "surrogatepass"));
        if (!b) throw py::error_already_set();
        return b.cast<std::string>();
    }
    throw py::type_error(std::string(what) + " must be str or bytes");
}

py::str utf8_str(const std::string& s) {
    return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(s.data(), py::ssize_t(s.size()), "replace"));
}

std::vector<int32_t> tokenize(const Model& model, const py::handle& text, int32_t flags) {
    const std::string t = to_utf8(text, "text");
    edgert_model* m = model.get()->ptr;
    std::vector<int32_t> ids(t.size() + 3);
    int32_t n = 0;
    edgert_status st;
    {
        py::gil_scoped_release nogil;
        st = edgert_tokenize(m, t.data(), t.size(), flags, ids.data(), int32_t(ids.size()), &n);
    }
    check(st);
    ids.resize(size_t(n));
    return ids;
}

py::str detokenize(const Model& model, const py::handle& tokens, int32_t flags) {
    const std::vector<int32_t> ids = to_token_vector(tokens);
    edgert_model* m = model.get()->ptr;
    size_t len = 0;
    check(edgert_detokenize(m, ids.data(), int32_t(ids.size()), flags, nullptr, 0, &len));
    std::string out(len + 1, '\0');
    check(edgert_detokenize(m, ids.data(), int32_t(ids.size()), flags, &out[0], out.size(), &len));
    out.resize(len);
    return utf8_str(out);
}

py::bytes token_to_piece(const Model& model, int32_t token) {
    size_t len = 0;
    char buf[256];
    check(edgert_token_to_piece(model.get()->ptr, token, buf, sizeof buf, &len));
    if (len < sizeof buf) return py::bytes(buf, len);
    std::string out(len + 1, '\0');
    check(edgert_token_to_piece(model.get()->ptr, token, &out[0], out.size(), &len));
    return py::bytes(out.data(), len);
}

struct Detokenizer {
    std::shared_ptr<ModelBox> model;
    edgert_detokenizer* ptr = nullptr;
    std::mutex mu;
    ~Detokenizer() { edgert_detokenizer_free(ptr); }
};

std::shared_ptr<Detokenizer> detokenizer_new(const Model& model, const py::handle& context, int32_t flags) {
    const std::vector<int32_t> ids = context.is_none() ? std::vector<int32_t>{} : to_token_vector(context);
    auto d = std::make_shared<Detokenizer>();
    d->model = model.get();
    check(edgert_detokenizer_new(d->model->ptr, ids.data(), int32_t(ids.size()), flags, &d->ptr));
    return d;
}

py::str detokenizer_feed(Detokenizer& d, int32_t token) {
    std::lock_guard<std::mutex> lock(d.mu);
    const char* text = nullptr;
    size_t len = 0;
    check(edgert_detokenizer_feed(d.ptr, token, &text, &len));
    return utf8_str(std::string(text, len));
}

py::str detokenizer_flush(Detokenizer& d) {
    std::lock_guard<std::mutex> lock(d.mu);
    const char* text = nullptr;
    size_t len = 0;
    check(edgert_detokenizer_flush(d.ptr, &text, &len));
    return utf8_str(std::string(text, len));
}

py::str chat_format(const Model& model, const py::handle& messages, bool add_generation_prompt,
                    const py::object& chat_template) {
    std::vector<std::string> roles, contents;
    for (const py::handle& m : messages) {
        py::object role = m["role"], content = m["content"];
        roles.push_back(to_utf8(role, "a message's role"));
        contents.push_back(to_utf8(content, "a message's content"));
    }
    std::vector<edgert_chat_message> msgs(roles.size());
    for (size_t i = 0; i < roles.size(); ++i) msgs[i] = {roles[i].c_str(), contents[i].c_str()};
    std::string tmpl;
    if (!chat_template.is_none()) tmpl = to_utf8(chat_template, "chat_template");
    const char* t = chat_template.is_none() ? nullptr : tmpl.c_str();
    edgert_model* mp = model.get()->ptr;
    size_t len = 0;
    check(edgert_chat_format(mp, t, msgs.data(), int32_t(msgs.size()), add_generation_prompt, nullptr, 0, &len));
    std::string out(len + 1, '\0');
    check(edgert_chat_format(mp, t, msgs.data(), int32_t(msgs.size()), add_generation_prompt, &out[0], out.size(), &len));
    out.resize(len);
    return utf8_str(out);
}

int32_t text_callback_trampoline(const char* text, size_t len, void* user_data) {
    auto* state = static_cast<CallbackState*>(user_data);
    py::gil_scoped_acquire gil;
    try {
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        py::object r = state->fn(utf8_str(std::string(text, len)));
        return (!r.is_none() && r.cast<bool>()) ? 1 : 0;
    } catch (...) {
        state->error = std::current_exception();
        return 1;
    }
}

int32_t generate_text(Context& ctx, Sampler& smp, const py::handle& prompt, int32_t flags,
                      int32_t max_new_tokens, const py::object& callback) {
    const std::string text = to_utf8(prompt, "prompt");
    edgert_context* c = ctx.get();
    edgert_sampler* s = smp.get();
    CallbackState state{callback, nullptr};
    int32_t n_generated = 0;
    edgert_status st;
    std::string msg;
    {
        py::gil_scoped_release nogil;
        std::lock(ctx.mu, smp.mu);
        std::lock_guard<std::mutex> lc(ctx.mu, std::adopt_lock);
        std::lock_guard<std::mutex> ls(smp.mu, std::adopt_lock);
        st = edgert_generate_text(c, s, text.data(), text.size(), flags, max_new_tokens,
                                  callback.is_none() ? nullptr : text_callback_trampoline, &state,
                                  &n_generated);
        if (st != EDGERT_OK) msg = edgert_last_error();
    }
    if (state.error) std::rethrow_exception(state.error);
    if (st != EDGERT_OK) raise_error(st, msg.empty() ? std::string(edgert_status_string(st)) : msg);
    return n_generated;
}

py::list llama_tensor_names() {
    py::list out;
#define X(id, pattern, per_layer, optional)                                                  \
    {                                                                                        \
        py::dict d;                                                                          \
        d["id"] = #id;                                                                       \
        d["name"] = pattern;                                                                 \
        d["per_layer"] = static_cast<bool>(per_layer);                                       \
        d["optional"] = static_cast<bool>(optional);                                         \
        out.append(d);                                                                       \
    }
#include "models/llama_tensor_names.def"
#undef X
    return out;
}

}  // namespace

PYBIND11_MODULE(_edgert, m) {
    m.doc() = "Thin binding of the edgert C API (edgert.h). Use edgert.LLM or edgert.model instead.";
    m.attr("ABI_VERSION") = EDGERT_ABI_VERSION;
    m.attr("KV_F32") = static_cast<int>(EDGERT_KV_F32);
    m.attr("KV_AUTO") = static_cast<int>(EDGERT_KV_AUTO);
    m.attr("KV_F16") = static_cast<int>(EDGERT_KV_F16);
    m.attr("KV_Q8") = static_cast<int>(EDGERT_KV_Q8);
    m.attr("KV_Q4") = static_cast<int>(EDGERT_KV_Q4);

    m.def("status_string", [](int s) { return std::string(edgert_status_string(static_cast<edgert_status>(s))); });
    m.def("last_error", [] { return std::string(edgert_last_error()); });
    m.def("abi_version", &edgert_abi_version);
    m.def("version", [] { return std::string(edgert_version()); });
    m.def("isa", [] { return std::string(edgert_isa()); });
    m.def("available_isas", [] { return std::string(edgert_available_isas()); });
    m.def("set_isa", [](const std::string& name) { check(edgert_set_isa(name.c_str())); }, py::arg("name"));

    py::class_<edgert_model_params>(m, "ModelParams")
        .def(py::init([] { return edgert_model_default_params(); }))
        .def_readwrite("verify_checksums", &edgert_model_params::verify_checksums)
        .def_readwrite("exact_matmul", &edgert_model_params::exact_matmul);
    py::class_<edgert_context_params>(m, "ContextParams")
        .def(py::init([] { return edgert_context_default_params(); }))
        .def_readwrite("n_ctx", &edgert_context_params::n_ctx)
        .def_readwrite("n_threads", &edgert_context_params::n_threads)
        .def_readwrite("n_threads_batch", &edgert_context_params::n_threads_batch)
        .def_readwrite("n_batch", &edgert_context_params::n_batch)
        .def_readwrite("kv_type_k", &edgert_context_params::kv_type_k)
        .def_readwrite("kv_type_v", &edgert_context_params::kv_type_v)
        .def_readwrite("memory_budget", &edgert_context_params::memory_budget);
    py::class_<edgert_sampler_params>(m, "SamplerParams")
        .def(py::init([] { return edgert_sampler_default_params(); }))
        .def_readwrite("temperature", &edgert_sampler_params::temperature)
        .def_readwrite("top_k", &edgert_sampler_params::top_k)
        .def_readwrite("top_p", &edgert_sampler_params::top_p)
        .def_readwrite("min_p", &edgert_sampler_params::min_p)
        .def_readwrite("repeat_penalty", &edgert_sampler_params::repeat_penalty)
        .def_readwrite("repeat_last_n", &edgert_sampler_params::repeat_last_n)
        .def_readwrite("seed", &edgert_sampler_params::seed);
    m.def("model_default_params", &edgert_model_default_params);
    m.def("context_default_params", &edgert_context_default_params);
    m.def("sampler_default_params", &edgert_sampler_default_params);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model");
    py::class_<Context, std::shared_ptr<Context>>(m, "Context");
    py::class_<Sampler, std::shared_ptr<Sampler>>(m, "Sampler");

    m.def("model_load", &model_load, py::arg("path"), py::arg("params") = nullptr);
    m.def("model_free", [](Model& model) { model.box.reset(); }, py::arg("model"));
    m.def("model_get_info", &model_get_info, py::arg("model"));
    m.def("model_get_layout", &model_get_layout, py::arg("model"));
    m.def("model_metadata_json", &model_metadata_json, py::arg("model"));

    m.def("context_new", &context_new, py::arg("model"), py::arg("params") = nullptr);
    m.def("context_free", &context_free, py::arg("ctx"));
    m.def("context_n_past", [](const Context& c) { return edgert_context_n_past(c.get()); }, py::arg("ctx"));
    m.def("context_n_ctx", [](const Context& c) { return edgert_context_n_ctx(c.get()); }, py::arg("ctx"));
    m.def("context_kv_bytes_per_token",
          [](const Context& c) { return edgert_context_kv_bytes_per_token(c.get()); }, py::arg("ctx"));
    m.def("context_kv_bytes_total",
          [](const Context& c) { return edgert_context_kv_bytes_total(c.get()); }, py::arg("ctx"));
    m.def("context_trim",
          [](Context& c, int32_t n_keep) {
              edgert_context* p = c.get();
              std::lock_guard<std::mutex> lock(c.mu);
              check(edgert_context_trim(p, n_keep));
          },
          py::arg("ctx"), py::arg("n_keep"));
    m.def("eval", &eval, py::arg("ctx"), py::arg("tokens"), py::arg("logits") = py::none(),
          py::arg("all_logits") = false,
          "Evaluate tokens at n_past. logits: None, or a float32 array to fill (vocab_size floats, "
          "or n_tokens * vocab_size with all_logits).");

    m.def("eval_batch", &eval_batch, py::arg("ctxs"), py::arg("tokens"),
          "edgert_eval_batch: tokens[t] appended to ctxs[t] in one forward pass; float32 [n, vocab].");

    m.def("context_save", &context_save, py::arg("ctx"), py::arg("path"));
    m.def("context_load", &context_load, py::arg("ctx"), py::arg("path"));
    m.def("context_tokens", &context_tokens, py::arg("ctx"),
          "The token ids whose K/V the cache holds, in position order.");

    m.def("sampler_new", &sampler_new, py::arg("params") = nullptr);
    m.def("sampler_free", &sampler_free, py::arg("sampler"));
    m.def("sampler_reset",
          [](Sampler& s) {
              edgert_sampler* p = s.get();
              std::lock_guard<std::mutex> lock(s.mu);
              edgert_sampler_reset(p);
          },
          py::arg("sampler"));
    m.def("sampler_accept",
          [](Sampler& s, int32_t token) {
              edgert_sampler* p = s.get();
              std::lock_guard<std::mutex> lock(s.mu);
              edgert_sampler_accept(p, token);
          },
          py::arg("sampler"), py::arg("token"));
    m.def("sampler_sample", &sampler_sample, py::arg("sampler"), py::arg("logits"),
          py::arg("mask") = py::none(),
          "edgert_sampler_sample_masked: mask is None or a grammar engine's bitmask words.");
    m.def("sampler_probs", &sampler_probs, py::arg("sampler"), py::arg("logits"),
          py::arg("mask") = py::none(),
          "edgert_sampler_probs: the distribution the next sample would be drawn from.");

    m.def("generate", &generate, py::arg("ctx"), py::arg("sampler"), py::arg("prompt"),
          py::arg("max_new_tokens"), py::arg("stop_tokens") = py::none(),
          py::arg("callback") = py::none(),
          "Run edgert_generate; callback(token) returning a truthy value stops generation. "
          "Returns the number of tokens generated.");

    m.attr("TOKENIZE_ADD_SPECIAL") = EDGERT_TOKENIZE_ADD_SPECIAL;
    m.attr("TOKENIZE_PARSE_SPECIAL") = EDGERT_TOKENIZE_PARSE_SPECIAL;
    m.attr("DETOKENIZE_SKIP_SPECIAL") = EDGERT_DETOKENIZE_SKIP_SPECIAL;
    py::class_<Detokenizer, std::shared_ptr<Detokenizer>>(m, "Detokenizer");
    m.def("tokenize", &tokenize, py::arg("model"), py::arg("text"), py::arg("flags") = 0,
          "edgert_tokenize: token ids of str or UTF-8 bytes");
    m.def("detokenize", &detokenize, py::arg("model"), py::arg("tokens"), py::arg("flags") = 0);
    m.def("token_to_piece", &token_to_piece, py::arg("model"), py::arg("token"));
    m.def("token_is_eog", [](const Model& model, int32_t token) {
        return edgert_token_is_eog(model.get()->ptr, token) != 0; }, py::arg("model"), py::arg("token"));
    m.def("detokenizer_new", &detokenizer_new, py::arg("model"), py::arg("context") = py::none(),
          py::arg("flags") = 0);
    m.def("detokenizer_free", [](Detokenizer& d) {
        std::lock_guard<std::mutex> lock(d.mu);
        edgert_detokenizer_free(d.ptr);
        d.ptr = nullptr; }, py::arg("detok"));
    m.def("detokenizer_feed", [](Detokenizer& d, int32_t token) {
        if (!d.ptr) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the detokenizer was freed");
        return detokenizer_feed(d, token); }, py::arg("detok"), py::arg("token"));
    m.def("detokenizer_flush", [](Detokenizer& d) {
        if (!d.ptr) raise_error(EDGERT_ERR_INVALID_ARGUMENT, "the detokenizer was freed");
        return detokenizer_flush(d); }, py::arg("detok"));
    m.def("chat_format", &chat_format, py::arg("model"), py::arg("messages"),
          py::arg("add_generation_prompt") = true, py::arg("chat_template") = py::none());
    m.def("chat_template_family", [](const Model& model, const py::object& tmpl) -> py::object {
        std::string t = tmpl.is_none() ? std::string() : to_utf8(tmpl, "chat_template");
        const char* r = edgert_chat_template_family(model.get()->ptr, tmpl.is_none() ? nullptr : t.c_str());
        return r ? py::object(py::str(r)) : py::object(py::none()); },
          py::arg("model"), py::arg("chat_template") = py::none());
    m.def("generate_text", &generate_text, py::arg("ctx"), py::arg("sampler"), py::arg("prompt"),
          py::arg("flags") = 0, py::arg("max_new_tokens") = 256, py::arg("callback") = py::none(),
          "Run edgert_generate_text; callback(text) returning a truthy value stops generation. "
          "Returns the number of tokens generated.");
    m.def("llama_tensor_names", &llama_tensor_names,
          "The llama tensor-name registry (native/src/models/llama_tensor_names.def) as a list of "
          "dicts: id, name ('%d' is the block index), per_layer, optional.");
}
