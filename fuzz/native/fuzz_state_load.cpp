// fuzz_state_load.cpp — a context-state file from the fuzzer through edgert_context_load, into a
// fresh context of a fixed tiny model (fuzz_common.h: state_target_model). Input: byte 0 picks
// the context's KV types (a state loads only into a context with its own), the rest is the file.
// Both CRCs are recomputed so mutations reach the checks behind them; the model id is the
// seeds'. A state that loads is decoded from (one token, greedy): its K/V rows (scales
// included) come straight from the file.
#include <string>
#include <vector>

#include "fuzz_common.h"

using namespace edgert_fuzz;

namespace {

edgert_model* fixed_model() {
    static edgert_model* model = [] {
        const std::vector<uint8_t> bytes = state_target_model();
        const std::string path = scratch_path("state_model.edgt");
        write_all(path, bytes.data(), bytes.size());
        edgert_model* m = nullptr;
        if (edgert_model_load(path.c_str(), nullptr, &m) != EDGERT_OK) {
            finding("the state target's own model does not load: %s", edgert_last_error());
        }
        unlink(path.c_str());
        return m;
    }();
    return model;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const edgert_context_params cp = state_target_params(data[0]);
    std::vector<uint8_t> file(data + 1, data + size);
    fix_state_crcs(file);
    static const std::string path = scratch_path("state.kvs");
    write_all(path, file.data(), file.size());

    edgert_context* ctx = nullptr;
    if (edgert_context_new(fixed_model(), &cp, &ctx) != EDGERT_OK) {
        finding("the state target's context does not build: %s", edgert_last_error());
    }
    const edgert_status st = edgert_context_load(ctx, path.c_str());
    if (check_status("edgert_context_load", st,
                     {EDGERT_ERR_FORMAT, EDGERT_ERR_VERSION, EDGERT_ERR_INVALID_ARGUMENT,
                      EDGERT_ERR_CONTEXT_OVERFLOW})) {
        const int32_t n_past = edgert_context_n_past(ctx);
        if (n_past < 0 || n_past > edgert_fuzz::kStateCtx) finding("n_past %d after load", n_past);
        if (n_past < edgert_fuzz::kStateCtx) {
            std::vector<float> logits(32);
            const int32_t token = 3;
            check_status("edgert_eval", edgert_eval(ctx, &token, 1, logits.data(), 0), {});
            edgert_sampler* smp = nullptr;
            edgert_sampler_new(nullptr, &smp);
            int32_t out = -1;
            // Rows with NaN or huge scales give NaN logits: the sampler's documented refusal.
            if (check_status("edgert_sampler_sample",
                             edgert_sampler_sample(smp, logits.data(), 32, &out),
                             {EDGERT_ERR_INVALID_ARGUMENT}) &&
                (out < 0 || out >= 32)) {
                finding("sampled token %d outside the vocabulary", out);
            }
            edgert_sampler_free(smp);
        }
    } else if (edgert_context_n_past(ctx) != 0) {
        finding("a failed edgert_context_load changed the context");
    }
    edgert_context_free(ctx);
    return 0;
}
