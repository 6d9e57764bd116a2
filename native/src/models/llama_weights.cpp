// llama_weights.cpp — tensor binding for the `llama` architecture, driven by the one name
// registry (llama_tensor_names.def) the converters also use.
#include "models/llama_weights.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <unordered_set>

#include "core/message_text.h"
#include "core/status_error.h"

namespace edgert {
namespace {

enum class LlamaTensor {
#define X(id, pattern, per_layer, optional) id,
#include "models/llama_tensor_names.def"
#undef X
};

struct NameEntry {
    const char* pattern;
    bool per_layer;
};

const NameEntry kNames[] = {
#define X(id, pattern, per_layer, optional) {pattern, per_layer},
#include "models/llama_tensor_names.def"
#undef X
};

std::string tensor_name(LlamaTensor id, int layer) {
    const NameEntry& e = kNames[int(id)];
    if (!e.per_layer) return e.pattern;
    char buf[128];
    std::snprintf(buf, sizeof buf, e.pattern, layer);
    return buf;
}

[[noreturn]] void tensor_error(const std::string& name, const std::string& msg) {
    fail(EDGERT_ERR_FORMAT, "invalid llama model: tensor " + quote_bytes(name) + " " + msg);
}

std::string shape_string(std::initializer_list<int64_t> dims) {
    std::string s = "[";
    bool first = true;
    for (int64_t d : dims) {
        s += (first ? "" : ", ") + std::to_string(d);
        first = false;
    }
    return s + "]";
}

class Binder {
public:
    Binder(const EdgtFile& file, bool exact, int num_layers)
        : file_(file), exact_(exact), num_layers_(num_layers) {}

    // What matrix() spent re-laying weights out for the kernels so far.
    const WeightLayoutStats& layout() const { return layout_; }

    // Returns the tensor, or null if it is absent and not required.
    const TensorInfo* get(LlamaTensor id, int layer, bool required,
                          std::initializer_list<int64_t> shape) {
        std::string name = tensor_name(id, layer);
        const TensorInfo* t = file_.find(name);
        if (!t) {
            // A per-layer tensor may be missing because hparams.num_layers overstates the file.
            if (required && kNames[int(id)].per_layer) {
                tensor_error(name, "is missing (hparams.num_layers is " + std::to_string(num_layers_) + ")");
            }
            if (required) tensor_error(name, "is missing");
            return nullptr;
        }
        used_.insert(name);
        bool ok = t->n_dims == int(shape.size());
        int i = 0;
        for (int64_t d : shape) ok = ok && t->dims[i++] == d;
        if (!ok) {
            std::string got = "[";
            for (int k = 0; k < t->n_dims; ++k) got += (k ? ", " : "") + std::to_string(t->dims[k]);
            tensor_error(name, "has shape " + got + "], expected " + shape_string(shape));
        }
        return t;
    }

    const float* f32(LlamaTensor id, int layer, bool required, int64_t n) {
        const TensorInfo* t = get(id, layer, required, {n});
        if (!t) return nullptr;
        if (t->dtype != DType::F32) tensor_error(t->name, "must be stored as f32");
        return reinterpret_cast<const float*>(t->data);
    }

    Weight matrix(LlamaTensor id, int layer, int64_t rows, int64_t cols, bool prepare = true) {
        const TensorInfo* t = get(id, layer, true, {rows, cols});
        Weight w;
        w.type = t->dtype;
        w.data = t->data;
        w.rows = rows;
        w.cols = cols;
        w.exact = exact_;
        // The exact path dequantizes the canonical rows; a re-laid-out copy would be dead weight.
        if (prepare && !exact_) {
            const auto t0 = std::chrono::steady_clock::now();
            prepare_weight(w);
            layout_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            if (w.packed) {
                layout_.isa = w.packed_isa;
                layout_.bytes += w.packed_bytes;
            }
        }
        // Matmuls now read only the packed copy; the canonical bytes are read again only for
        // embedding rows (row_to_float), which fault back in one page at a time.
        if (w.packed) file_.drop_pages(*t);
        return w;
    }

    void reject_absent(LlamaTensor id, int layer, const char* why) {
        std::string name = tensor_name(id, layer);
        if (file_.find(name)) tensor_error(name, std::string("must be absent ") + why);
    }

    void reject_unused() const {
        for (const auto& t : file_.tensors()) {
            if (!used_.count(t.name)) tensor_error(t.name, "is not a tensor of the llama architecture");
        }
    }

private:
    const EdgtFile& file_;
    bool exact_;
    int num_layers_;
    std::unordered_set<std::string> used_;
    WeightLayoutStats layout_;
};

}  // namespace

void llama_bind_weights(Model& model, bool exact_matmul) {
    const Hparams& hp = model.meta.hparams;
    const int64_t H = hp.hidden_size, F = hp.intermediate_size, V = hp.vocab_size;
    const int64_t Dh = hp.head_dim;
    const int64_t q_dim = int64_t(hp.num_heads) * Dh, kv_dim = int64_t(hp.num_kv_heads) * Dh;
    Binder b(*model.file, exact_matmul, hp.num_layers);

    // Only a tied embedding is ever multiplied; an untied one is read row by row, so a packed
    // copy would just double its memory.
    model.token_embd = b.matrix(LlamaTensor::TOKEN_EMBD, 0, V, H, hp.tie_embeddings);
    model.output_norm = b.f32(LlamaTensor::OUTPUT_NORM, 0, true, H);
    if (hp.tie_embeddings) {
        b.reject_absent(LlamaTensor::OUTPUT, 0, "when tie_embeddings is true");
        model.output = model.token_embd;
    } else {
        model.output = b.matrix(LlamaTensor::OUTPUT, 0, V, H);
    }

    // Nothing below is sized from an hparam before a tensor of the file has confirmed it: a layer
    // is added only as its tensors are found (a header claiming millions of layers fails at the
    // first missing one, having allocated for the layers the file really holds), and inv_freq
    // ([Dh/2]) is built after blk.0.attn_q.weight ([num_heads * Dh, H]) matched its shape.
    model.layers.reserve(std::min<size_t>(size_t(hp.num_layers), model.file->tensors().size() / 9));
    for (int l = 0; l < hp.num_layers; ++l) {
        model.layers.emplace_back();
        LlamaLayer& L = model.layers.back();
        L.attn_norm = b.f32(LlamaTensor::ATTN_NORM, l, true, H);
        L.wq = b.matrix(LlamaTensor::ATTN_Q, l, q_dim, H);
        L.wk = b.matrix(LlamaTensor::ATTN_K, l, kv_dim, H);
        L.wv = b.matrix(LlamaTensor::ATTN_V, l, kv_dim, H);
        if (hp.attention_bias) {
            L.bq = b.f32(LlamaTensor::ATTN_Q_BIAS, l, true, q_dim);
            L.bk = b.f32(LlamaTensor::ATTN_K_BIAS, l, true, kv_dim);
            L.bv = b.f32(LlamaTensor::ATTN_V_BIAS, l, true, kv_dim);
        } else {
            b.reject_absent(LlamaTensor::ATTN_Q_BIAS, l, "when attention_bias is false");
            b.reject_absent(LlamaTensor::ATTN_K_BIAS, l, "when attention_bias is false");
            b.reject_absent(LlamaTensor::ATTN_V_BIAS, l, "when attention_bias is false");
        }
        L.wo = b.matrix(LlamaTensor::ATTN_OUTPUT, l, H, q_dim);
        L.ffn_norm = b.f32(LlamaTensor::FFN_NORM, l, true, H);
        L.w_gate = b.matrix(LlamaTensor::FFN_GATE, l, F, H);
        L.w_up = b.matrix(LlamaTensor::FFN_UP, l, F, H);
        L.w_down = b.matrix(LlamaTensor::FFN_DOWN, l, H, F);
    }

    const float* rope_freqs = b.f32(LlamaTensor::ROPE_FREQS, 0, false, Dh / 2);
    model.inv_freq.resize(size_t(Dh / 2));
    for (int64_t i = 0; i < Dh / 2; ++i) {
        double f = std::pow(double(hp.rope_theta), -2.0 * double(i) / double(Dh));
        if (rope_freqs) {
            if (!(rope_freqs[i] > 0.f) || !std::isfinite(rope_freqs[i])) {
                tensor_error("rope_freqs.weight", "must hold positive finite factors");
            }
            f /= double(rope_freqs[i]);
        }
        model.inv_freq[size_t(i)] = float(f);
    }
    b.reject_unused();
    model.layout = b.layout();
}

}  // namespace edgert
