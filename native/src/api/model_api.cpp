// model_api.cpp — edgert_model_* of the C API.
#include <algorithm>
#include <cstring>

#include "api/api_guard.h"
#include "api/handles.h"
#include "core/model_loader.h"

namespace {

// Truncates at a UTF-8 character boundary, so a long model name never ends in half a character.
void copy_truncated(char* dst, size_t cap, const std::string& src) {
    size_t n = std::min(cap - 1, src.size());
    while (n < src.size() && n > 0 && (static_cast<unsigned char>(src[n]) & 0xC0) == 0x80) --n;
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

}  // namespace

extern "C" {

EDGERT_API edgert_model_params edgert_model_default_params(void) {
    edgert_model_params p;
    p.verify_checksums = 0;
    p.exact_matmul = 0;
    return p;
}

EDGERT_API edgert_status edgert_model_load(const char* path, const edgert_model_params* params,
                                           edgert_model** out_model) {
    return edgert::api_call("edgert_model_load", [&] {
        edgert::require_non_null(path, "path");
        edgert::require_non_null(out_model, "out_model");
        const edgert_model_params p = params ? *params : edgert_model_default_params();
        auto handle = std::make_unique<edgert_model>();
        handle->impl = edgert::load_model_file(path, p.verify_checksums != 0, p.exact_matmul != 0);
        *out_model = handle.release();
    });
}

EDGERT_API void edgert_model_free(edgert_model* model) { delete model; }

EDGERT_API edgert_status edgert_model_get_info(const edgert_model* model, edgert_model_info* out) {
    return edgert::api_call("edgert_model_get_info", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(out, "out");
        const edgert::Model& m = *model->impl;
        const edgert::Hparams& hp = m.meta.hparams;
        edgert_model_info info;
        std::memset(&info, 0, sizeof info);
        copy_truncated(info.architecture, sizeof info.architecture, m.meta.architecture);
        copy_truncated(info.name, sizeof info.name, m.meta.name);
        info.format_version = m.meta.format_version;
        info.vocab_size = hp.vocab_size;
        info.hidden_size = hp.hidden_size;
        info.intermediate_size = hp.intermediate_size;
        info.num_layers = hp.num_layers;
        info.num_heads = hp.num_heads;
        info.num_kv_heads = hp.num_kv_heads;
        info.head_dim = hp.head_dim;
        info.context_length = hp.context_length;
        info.bos_token_id = m.meta.bos_token_id;
        info.eos_token_id = m.meta.eos_token_ids.empty() ? -1 : m.meta.eos_token_ids[0];
        info.rope_theta = hp.rope_theta;
        info.rms_norm_eps = hp.rms_norm_eps;
        info.n_params = m.n_params;
        info.file_size = m.file->file_size();
        info.weights_size = m.weights_size;
        *out = info;
    });
}

EDGERT_API edgert_status edgert_model_get_layout(const edgert_model* model, edgert_model_layout* out) {
    return edgert::api_call("edgert_model_get_layout", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(out, "out");
        const edgert::WeightLayoutStats& s = model->impl->layout;
        edgert_model_layout layout;
        std::memset(&layout, 0, sizeof layout);
        copy_truncated(layout.isa, sizeof layout.isa, s.isa);
        layout.bytes = s.bytes;
        layout.seconds = s.seconds;
        *out = layout;
    });
}

EDGERT_API const char* edgert_model_metadata_json(const edgert_model* model, size_t* out_len) {
    if (!model) {
        edgert::set_last_error("edgert_model_metadata_json: model is NULL");
        return nullptr;
    }
    const std::string_view json = model->impl->file->metadata();
    if (out_len) *out_len = json.size();
    return json.data();
}

}  // extern "C"
