// llama_weights.cpp — tensor binding for every family (families.def), driven by the one name
// registry (llama_tensor_names.def) the converters also use: the family's traits say which of
// the optional tensors it must have, and every other tensor is refused by name.
#include "models/llama_weights.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <string>
#include <unordered_set>
#include <vector>

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
    fail(EDGERT_ERR_FORMAT, "invalid model: tensor " + quote_bytes(name) + " " + msg);
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
        w.exact = exact_ || exact_by_name(t->name);
        // The exact path dequantizes the canonical rows; a re-laid-out copy would be dead weight.
        if (prepare && !w.exact) {
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

    // Diagnostic: EDGERT_EXACT_TENSORS=ffn_down,output,... puts the matrices whose names contain
    // one of these substrings on the exact (f32-activation) path, to find where int8
    // activations lose accuracy (benchmarks/activation_error.py).
    static bool exact_by_name(const std::string& name) {
        const char* env = std::getenv("EDGERT_EXACT_TENSORS");
        if (!env || !*env) return false;
        std::string list(env);
        size_t start = 0;
        while (start <= list.size()) {
            size_t end = list.find(',', start);
            if (end == std::string::npos) end = list.size();
            const std::string part = list.substr(start, end - start);
            if (!part.empty() && name.find(part) != std::string::npos) return true;
            start = end + 1;
        }
        return false;
    }

    void reject_absent(LlamaTensor id, int layer, const char* why) {
        std::string name = tensor_name(id, layer);
        if (file_.find(name)) tensor_error(name, std::string("must be absent ") + why);
    }

    // Every tensor the family did not ask for is an error, named with the family.
    void reject_unused(const std::string& architecture) const {
        for (const auto& t : file_.tensors()) {
            if (!used_.count(t.name)) {
                tensor_error(t.name, "is not a tensor of the " + architecture + " architecture");
            }
        }
    }

private:
    const EdgtFile& file_;
    bool exact_;
    int num_layers_;
    std::unordered_set<std::string> used_;
    WeightLayoutStats layout_;
};

// theta^(-2i/Dh) divided by factors[i] (when given), checked positive and finite.
std::vector<float> rope_frequencies(double theta, int64_t Dh, const float* factors, const char* name) {
    std::vector<float> f(size_t(Dh / 2));
    for (int64_t i = 0; i < Dh / 2; ++i) {
        double x = std::pow(theta, -2.0 * double(i) / double(Dh));
        if (factors) {
            if (!(factors[i] > 0.f) || !std::isfinite(factors[i])) {
                tensor_error(name, "must hold positive finite factors");
            }
            x /= double(factors[i]);
        }
        f[size_t(i)] = float(x);
    }
    return f;
}

// The RoPE variants (over rotary_dim, the first dims of each head): plain, divided by rope_freqs
// (Llama 3), LongRoPE's short and long factors (Phi-3), and the local base of sliding layers
// (Gemma 3).
void bind_rope(Model& model, Binder& b) {
    const Hparams& hp = model.meta.hparams;
    // Partial rotary (rope_dim < head_dim): tables over the rotated dims only.
    const int64_t Dh = hp.rotary_dim();
    const float* rope_freqs = b.f32(LlamaTensor::ROPE_FREQS, 0, false, Dh / 2);
    const float* short_f = b.f32(LlamaTensor::ROPE_FACTORS_SHORT, 0, false, Dh / 2);
    const float* long_f = b.f32(LlamaTensor::ROPE_FACTORS_LONG, 0, false, Dh / 2);
    if (!short_f != !long_f) {
        tensor_error(short_f ? "rope_factors_long.weight" : "rope_factors_short.weight",
                     "is missing (LongRoPE needs both factor tensors)");
    }
    if (short_f && rope_freqs) tensor_error("rope_freqs.weight", "must be absent with LongRoPE factors");
    if (short_f && hp.rope_original_context_length == 0) {
        fail(EDGERT_ERR_FORMAT, "invalid model: LongRoPE factors need hparams.rope_original_context_length");
    }
    model.inv_freq = short_f ? rope_frequencies(hp.rope_theta, Dh, short_f, "rope_factors_short.weight")
                             : rope_frequencies(hp.rope_theta, Dh, rope_freqs, "rope_freqs.weight");
    if (long_f) model.inv_freq_long = rope_frequencies(hp.rope_theta, Dh, long_f, "rope_factors_long.weight");
    if (hp.rope_local_theta > 0.f) model.inv_freq_local = rope_frequencies(hp.rope_local_theta, Dh, nullptr, "");
}

}  // namespace

void llama_bind_weights(Model& model, bool exact_matmul) {
    const Hparams& hp = model.meta.hparams;
    const int64_t H = hp.hidden_size, V = hp.vocab_size;
    const int64_t Dh = hp.head_dim;
    Binder b(*model.file, exact_matmul, hp.num_layers);
    model.family = find_family(model.meta.architecture);
    if (!model.family) {
        fail(EDGERT_ERR_UNSUPPORTED, "unsupported architecture " + quote_bytes(model.meta.architecture));
    }
    const FamilyTraits& fam = *model.family;

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
    // first missing one, having allocated for the layers the file really holds), and the RoPE
    // tables ([rotary_dim/2]) are built after blk.0.attn_q.weight ([heads(0) * Dh, H]) matched its
    // shape.
    model.layers.reserve(std::min<size_t>(size_t(hp.num_layers), model.file->tensors().size() / 9));
    for (int l = 0; l < hp.num_layers; ++l) {
        model.layers.emplace_back();
        LlamaLayer& L = model.layers.back();
        // Per-layer widths (a pruned model's) or the global ones.
        const int64_t F = hp.ffn_dim(l);
        const int64_t q_dim = int64_t(hp.heads(l)) * Dh, kv_dim = int64_t(hp.kv_heads(l)) * Dh;
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
        if (fam.qk_norm) {
            L.q_norm = b.f32(LlamaTensor::ATTN_Q_NORM, l, true, Dh);
            L.k_norm = b.f32(LlamaTensor::ATTN_K_NORM, l, true, Dh);
        }
        L.wo = b.matrix(LlamaTensor::ATTN_OUTPUT, l, H, q_dim);
        if (fam.post_norms) L.attn_post_norm = b.f32(LlamaTensor::ATTN_POST_NORM, l, true, H);
        L.ffn_norm = b.f32(LlamaTensor::FFN_NORM, l, true, H);
        L.w_gate = b.matrix(LlamaTensor::FFN_GATE, l, F, H);
        L.w_up = b.matrix(LlamaTensor::FFN_UP, l, F, H);
        L.w_down = b.matrix(LlamaTensor::FFN_DOWN, l, H, F);
        if (fam.post_norms) L.ffn_post_norm = b.f32(LlamaTensor::FFN_POST_NORM, l, true, H);
        L.sliding_window = hp.window(l);
    }
    bind_rope(model, b);
    // LongRoPE scales q and k by rope_attn_factor after RoPE: one factor squared on the scores
    // when RoPE turns whole heads; with partial rotary only the turned dims (llama.cpp's forward).
    const float mscale = hp.rotary_dim() == hp.head_dim ? hp.rope_attn_factor : 1.f;
    model.attn_scale = 1.0f / std::sqrt(hp.query_pre_attn_scalar) * mscale * mscale;
    for (LlamaLayer& L : model.layers) {
        const bool local = L.sliding_window > 0 && !model.inv_freq_local.empty();
        L.inv_freq = local ? model.inv_freq_local.data() : model.inv_freq.data();
        L.inv_freq_long = !local && !model.inv_freq_long.empty() ? model.inv_freq_long.data() : nullptr;
    }
    b.reject_unused(model.meta.architecture);
    model.layout = b.layout();
}

}  // namespace edgert
