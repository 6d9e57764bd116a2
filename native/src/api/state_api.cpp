// state_api.cpp — edgert_context_save / _load / _tokens of the C API (semantics in edgert.h;
// the file format in runtime/context_state.cpp).
#include <algorithm>
#include <cstring>

#include "api/api_guard.h"
#include "api/handles.h"

extern "C" {

EDGERT_API edgert_status edgert_context_save(const edgert_context* ctx, const char* path) {
    return edgert::api_call("edgert_context_save", [&] {
        edgert::require_non_null(ctx, "ctx");
        edgert::require_non_null(path, "path");
        ctx->impl->save(path);
    });
}

EDGERT_API edgert_status edgert_context_load(edgert_context* ctx, const char* path) {
    return edgert::api_call("edgert_context_load", [&] {
        edgert::require_non_null(ctx, "ctx");
        edgert::require_non_null(path, "path");
        ctx->impl->load(path);
    });
}

EDGERT_API int32_t edgert_context_tokens(const edgert_context* ctx, int32_t* out, int32_t capacity) {
    if (!ctx) return 0;
    const std::vector<int32_t>& t = ctx->impl->tokens();
    if (out && capacity > 0) {
        const size_t n = std::min(t.size(), size_t(capacity));
        std::memcpy(out, t.data(), n * sizeof(int32_t));
    }
    return int32_t(t.size());
}

}  // extern "C"
