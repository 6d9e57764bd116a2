// fuzz_load_decode.cpp — a model file from the fuzzer, the way an app meets a downloaded model.
// First the loader on the bytes in a heap buffer of exactly their size, with verify_checksums
// (which also refuses non-finite weights), so AddressSanitizer sees a read even one byte past the
// file (in a mapping it would land in the rest of the page); then edgert_model_load on the same
// bytes as a file (the C API and its mmap path), without verify; then, if it loaded, model info, a
// context, a 5-token prefill in two chunks, generation of 2 tokens with a sampling chain, and a
// state save/load round trip.
//
// The header CRC is recomputed before loading so mutations of the metadata and the tensor table
// reach their parsers (the CRC check itself is a comparison ctest covers). KV types, prompt ids
// and the sampler's settings come from a hash of the input, so each input is one reproducible
// case. Allowed failures are the documented ones (fuzz_common.h: check_status).
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/model_loader.h"
#include "core/status_error.h"
#include "fuzz_common.h"

using namespace edgert_fuzz;

namespace {

// Bytes a context may allocate: past this it must refuse with EDGERT_ERR_OUT_OF_MEMORY (the
// fuzzer's -malloc_limit_mb is set above it).
constexpr uint64_t kContextBudget = 64ull << 20;

void run_model(edgert_model* model, uint32_t h) {
    edgert_model_info info;
    if (!check_status("edgert_model_get_info", edgert_model_get_info(model, &info), {})) return;
    if (!is_valid_utf8(info.name) || !is_valid_utf8(info.architecture)) {
        finding("edgert_model_get_info returned a name that is not valid UTF-8");
    }
    size_t json_len = 0;
    if (!edgert_model_metadata_json(model, &json_len) || json_len == 0) {
        finding("a loaded model has no metadata JSON");
    }

    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = 8;
    cp.n_threads = 1;
    cp.n_batch = 4;
    cp.kv_type_k = int32_t(h % 5) - 1;  // EDGERT_KV_AUTO, F32, F16, Q8, Q4
    cp.kv_type_v = int32_t((h / 5) % 5) - 1;
    cp.memory_budget = kContextBudget;
    edgert_context* ctx = nullptr;
    if (!check_status("edgert_context_new", edgert_context_new(model, &cp, &ctx),
                      {EDGERT_ERR_OUT_OF_MEMORY, EDGERT_ERR_UNSUPPORTED})) {
        return;
    }

    edgert_sampler_params sp = edgert_sampler_default_params();
    if (h & 0x100) {
        sp.temperature = 0.8f;
        sp.top_k = int32_t((h >> 9) % 8);
        sp.top_p = 0.9f;
        sp.min_p = 0.05f;
        sp.repeat_penalty = 1.1f;
    }
    sp.seed = h;
    edgert_sampler* smp = nullptr;
    if (!check_status("edgert_sampler_new", edgert_sampler_new(&sp, &smp), {})) finding("unreachable");

    int32_t prompt[5];
    for (int i = 0; i < 5; ++i) prompt[i] = int32_t((h >> (3 * i)) % uint32_t(info.vocab_size));
    int32_t n_out = 0;
    // NaN or +inf logits (weights that overflow; verify_checksums refuses stored non-finite
    // values, not ones a forward pass makes) are the sampler's documented refusal.
    const edgert_status st = edgert_generate(ctx, smp, prompt, 5, 2, nullptr, 0, nullptr, nullptr, &n_out);
    if (check_status("edgert_generate", st, {EDGERT_ERR_INVALID_ARGUMENT})) {
        const std::string state = scratch_path("state");
        if (check_status("edgert_context_save", edgert_context_save(ctx, state.c_str()), {})) {
            const int32_t n_past = edgert_context_n_past(ctx);
            edgert_context_trim(ctx, 0);
            check_status("edgert_context_load", edgert_context_load(ctx, state.c_str()), {});
            if (edgert_context_n_past(ctx) != n_past) finding("a state round trip changed n_past");
        }
        unlink(state.c_str());
    }
    edgert_sampler_free(smp);
    edgert_context_free(ctx);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> bytes(data, data + size);
    fix_edgt_header_crc(bytes);
    static const std::string path = scratch_path("model.edgt");
    write_all(path, bytes.data(), bytes.size());
    const uint32_t h = crc32_of(data, size);

    try {
        edgert::load_model(edgert::MappedFile::from_bytes(bytes), true);
    } catch (const edgert::StatusError& e) {
        const edgert_status st = e.status();
        if (st != EDGERT_ERR_FORMAT && st != EDGERT_ERR_VERSION && st != EDGERT_ERR_UNSUPPORTED) {
            finding("load_model(verify) failed with %s: %s", edgert_status_string(st), e.what());
        }
        if (!is_valid_utf8(e.what())) finding("a load error message is not valid UTF-8: %s", e.what());
    }

    edgert_model_params mp = edgert_model_default_params();
    mp.exact_matmul = int32_t((h >> 20) & 1);
    edgert_model* model = nullptr;
    if (!check_status("edgert_model_load", edgert_model_load(path.c_str(), &mp, &model),
                      {EDGERT_ERR_FORMAT, EDGERT_ERR_VERSION, EDGERT_ERR_UNSUPPORTED})) {
        return 0;
    }
    run_model(model, h);
    edgert_model_free(model);
    return 0;
}
