// make_seeds.cpp — writes the generated part of the seed corpus: make_seeds CORPUS_DIR
//   CORPUS_DIR/fuzz_load_decode/    tiny Llama .edgt files: every weight dtype, tied and untied,
//                                   attention biases, rope_freqs, a head_dim that takes int8/int4
//                                   KV rows
//   CORPUS_DIR/fuzz_state_load/     state files of the state target's model (fuzz_common.h) for
//                                   every KV type pair, empty, short and past one Q4 offset block,
//                                   each behind its selector byte
//   CORPUS_DIR/fuzz_metadata_json/  the metadata of the model seeds
// Seeds are named seed-<what>; crashers found later are added beside them (minimized, named
// regress-<what>) by hand, so regenerating never removes one. Deterministic: the same bytes on
// every run.
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "fuzz_common.h"

using edgert::DType;
using edgert_test::TinyLlamaSpec;

namespace {

std::string g_dir;

void put(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string dir = g_dir + "/" + target;
    mkdir(dir.c_str(), 0755);
    edgert_test::write_file(dir + "/seed-" + name, bytes);
}

TinyLlamaSpec small() {
    TinyLlamaSpec s;
    s.vocab = 32;
    s.hidden = 32;
    s.ffn = 32;
    s.layers = 1;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 16;
    s.context = 64;
    return s;
}

void model_seeds() {
    struct Case {
        const char* name;
        TinyLlamaSpec spec;
    };
    std::vector<Case> cases;
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
        TinyLlamaSpec s = small();
        s.weight_type = t;
        s.embd_type = t == DType::F32 ? DType::F32 : DType::Q8_0;
        cases.push_back({edgert::dtype_name(t), s});
    }
    TinyLlamaSpec untied = small();
    untied.tie = false;
    untied.weight_type = DType::Q4_0;
    cases.push_back({"untied_q4_0", untied});
    TinyLlamaSpec extras = small();
    extras.bias = true;
    extras.rope_freqs = true;
    extras.weight_type = DType::Q8_0;
    cases.push_back({"bias_ropefreqs_q8_0", extras});
    TinyLlamaSpec kvq = small();
    kvq.hidden = 64;
    kvq.ffn = 64;
    kvq.head_dim = 32;
    kvq.layers = 2;
    kvq.weight_type = DType::Q4_1;
    kvq.embd_type = DType::Q4_1;
    cases.push_back({"headdim32_2layers_q4_1", kvq});

    for (const Case& c : cases) {
        const edgert_test::EdgtBuilder b = edgert_test::make_tiny_llama(c.spec);
        put("fuzz_load_decode", std::string("model_") + c.name, b.build());
        put("fuzz_metadata_json", std::string("meta_") + c.name,
            std::vector<uint8_t>(b.metadata.begin(), b.metadata.end()));
    }
}

void state_seeds() {
    const std::vector<uint8_t> bytes = edgert_fuzz::state_target_model();
    const std::string model_path = edgert_fuzz::scratch_path("seed_model.edgt");
    edgert_fuzz::write_all(model_path, bytes.data(), bytes.size());
    edgert_model* model = nullptr;
    if (edgert_model_load(model_path.c_str(), nullptr, &model) != EDGERT_OK) {
        std::fprintf(stderr, "make_seeds: %s\n", edgert_last_error());
        std::exit(1);
    }
    const std::string state_path = edgert_fuzz::scratch_path("seed_state.kvs");
    for (uint8_t sel = 0; sel < 16; ++sel) {
        const edgert_context_params cp = edgert_fuzz::state_target_params(sel);
        for (int32_t n : {0, 3, 70}) {
            edgert_context* ctx = nullptr;
            if (edgert_context_new(model, &cp, &ctx) != EDGERT_OK) {
                std::fprintf(stderr, "make_seeds: %s\n", edgert_last_error());
                std::exit(1);
            }
            std::vector<int32_t> toks(static_cast<size_t>(n));
            for (int32_t i = 0; i < n; ++i) toks[size_t(i)] = (i * 7 + 3) % 32;
            if (n > 0) edgert_eval(ctx, toks.data(), n, nullptr, 0);
            edgert_context_save(ctx, state_path.c_str());
            edgert_context_free(ctx);
            std::FILE* f = std::fopen(state_path.c_str(), "rb");
            std::vector<uint8_t> file{sel};
            for (int c; f && (c = std::fgetc(f)) != EOF;) file.push_back(uint8_t(c));
            if (f) std::fclose(f);
            // Small seeds mutate faster: keep the long one only for the quantized pairs.
            if (n == 70 && file.size() > 24000) continue;
            put("fuzz_state_load", "k" + std::to_string(sel & 3) + "v" + std::to_string(sel >> 2) +
                                       "_n" + std::to_string(n), file);
        }
    }
    unlink(state_path.c_str());
    unlink(model_path.c_str());
    edgert_model_free(model);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    mkdir(g_dir.c_str(), 0755);
    model_seeds();
    state_seeds();
    return 0;
}
