// test_loader_bad_input.cpp — every way a .edgt file can be broken gets its exact status, never a
// crash: truncation at every byte, flipped bytes, bad offsets/sizes/alignment, overlap, unknown
// dtype, newer version, unknown architecture, missing or misshapen tensors, malformed JSON.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>

#include "check.h"
#include "core/mapped_file.h"
#include "core/model_loader.h"
#include "core/status_error.h"
#include "runtime/context.h"
#include "edgt_writer.h"

using namespace edgert_test;
using edgert::DType;

namespace {

std::string g_message;  // message of the last failed load

edgert_status load_bytes(const std::vector<uint8_t>& bytes, bool verify = false) {
    try {
        edgert::load_model(edgert::MappedFile::from_bytes(bytes), verify);
        g_message.clear();
        return EDGERT_OK;
    } catch (const edgert::StatusError& e) {
        g_message = e.what();
        return e.status();
    }
}

// Through the C API and a real file on disk (mmap path).
edgert_status load_file(const std::vector<uint8_t>& bytes, bool verify = false) {
    const std::string path = temp_path("bad");
    write_file(path, bytes);
    edgert_model_params p = edgert_model_default_params();
    p.verify_checksums = verify;
    edgert_model* model = reinterpret_cast<edgert_model*>(0x1);  // must stay untouched on failure
    edgert_status st = edgert_model_load(path.c_str(), &p, &model);
    if (st == EDGERT_OK) {
        edgert_model_free(model);
    } else {
        CHECK(model == reinterpret_cast<edgert_model*>(0x1));
        CHECK(std::strlen(edgert_last_error()) > 0);
        g_message = edgert_last_error();
    }
    unlink(path.c_str());
    return st;
}

bool message_has(const std::string& needle) { return g_message.find(needle) != std::string::npos; }

TinyLlamaSpec small_spec() {
    TinyLlamaSpec s;
    s.vocab = 32;
    s.hidden = 32;
    s.ffn = 32;
    s.layers = 1;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 16;
    return s;
}

void test_valid_file_loads() {
    auto bytes = make_tiny_llama(small_spec()).build();
    CHECK_STATUS(load_bytes(bytes, true), EDGERT_OK);
    CHECK_STATUS(load_file(bytes, true), EDGERT_OK);
}

void test_truncation_at_every_byte() {
    auto bytes = make_tiny_llama(small_spec()).build();
    int wrong = 0;
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + std::ptrdiff_t(n));
        edgert_status st = load_bytes(cut);
        if (st != EDGERT_ERR_FORMAT) {
            if (wrong++ < 5) std::fprintf(stderr, "truncated to %zu bytes: %s\n", n, edgert_status_string(st));
        }
    }
    CHECK_MSG(wrong == 0, "%d of %zu truncations were not EDGERT_ERR_FORMAT", wrong, bytes.size());
    CHECK_STATUS(load_file({}), EDGERT_ERR_FORMAT);  // empty file through mmap
}

void test_flipped_bytes() {
    auto bytes = make_tiny_llama(small_spec()).build();
    const FileLayout l = read_layout(bytes);
    const size_t end_of_table = l.table_offset + l.table_size;
    int wrong = 0;
    for (size_t i = 0; i < end_of_table; ++i) {
        auto bad = bytes;
        bad[i] ^= 0xFF;
        // The version is read before the checksum (a newer version may have another layout).
        const edgert_status expected = (i >= 4 && i < 8) ? EDGERT_ERR_VERSION : EDGERT_ERR_FORMAT;
        edgert_status st = load_bytes(bad);
        if (st != expected) {
            if (wrong++ < 5) std::fprintf(stderr, "byte %zu flipped: %s\n", i, edgert_status_string(st));
        }
    }
    CHECK_MSG(wrong == 0, "%d flipped header/metadata/table bytes gave the wrong status", wrong);

    // Tensor data is covered by the per-tensor CRCs only when asked for.
    auto bad = bytes;
    bad[l.data_offset + l.data_size - 1] ^= 0x01;
    CHECK_STATUS(load_bytes(bad, false), EDGERT_OK);
    CHECK_STATUS(load_bytes(bad, true), EDGERT_ERR_FORMAT);
    CHECK(message_has("checksum"));
    CHECK_STATUS(load_file(bad, true), EDGERT_ERR_FORMAT);
}

void test_header_offsets_past_end() {
    auto bytes = make_tiny_llama(small_spec()).build();
    auto patch_u64 = [](std::vector<uint8_t> b, size_t at, uint64_t v) {
        for (int i = 0; i < 8; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
        refresh_header_crc(b);
        return b;
    };
    const FileLayout l = read_layout(bytes);
    CHECK_STATUS(load_bytes(patch_u64(bytes, 16, UINT64_MAX - 10)), EDGERT_ERR_FORMAT);  // metadata_size
    CHECK_STATUS(load_bytes(patch_u64(bytes, 32, bytes.size())), EDGERT_ERR_FORMAT);    // table_size
    CHECK_STATUS(load_bytes(patch_u64(bytes, 40, l.data_offset + 64)), EDGERT_ERR_FORMAT);  // data_offset
    CHECK_STATUS(load_bytes(patch_u64(bytes, 40, l.data_offset + 1)), EDGERT_ERR_FORMAT);   // misaligned
    CHECK_STATUS(load_bytes(patch_u64(bytes, 48, l.data_size + 1)), EDGERT_ERR_FORMAT);     // data_size
    CHECK_STATUS(load_bytes(patch_u64(bytes, 48, UINT64_MAX)), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_file(patch_u64(bytes, 8, 65)), EDGERT_ERR_FORMAT);  // metadata_offset != 64
    // tensor_count claiming more entries than the table holds
    auto many = bytes;
    for (int i = 0; i < 4; ++i) many[56 + size_t(i)] = 0xFF;
    refresh_header_crc(many);
    CHECK_STATUS(load_bytes(many), EDGERT_ERR_FORMAT);
}

void test_tensor_entries() {
    const TinyLlamaSpec spec = small_spec();
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.ffn_up.weight")->offset_field = 1 << 20;  // past the data region
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("blk.0.ffn_up.weight"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.tensors.back().offset_field = UINT64_MAX - 63;  // offset + size overflows
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_q.weight")->offset_field = 32;  // not a multiple of 64
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("multiple of 64"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_k.weight")->offset_field = 0;  // on top of token_embd
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("overlap"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("output_norm.weight")->size_field = 4 * 32 + 4;  // not what dtype and dims imply
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.ffn_gate.weight")->dtype_field = 9;  // a GGUF id edgert does not know (q8_1)
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_UNSUPPORTED);
        CHECK(message_has("blk.0.ffn_gate.weight") && message_has("9"));
    }
    {
        // A super-block type on rows that are not whole 256-element super-blocks (hidden 64).
        auto b = make_tiny_llama(spec);
        b.find("blk.0.ffn_gate.weight")->dtype_field = 12;  // q4_k
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("blk.0.ffn_gate.weight") && message_has("block size 256"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.tensors.push_back(b.tensors[1]);  // duplicate name
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("duplicate"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_v.weight")->dims = {16, 31, 1};  // same bytes, wrong dims
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_v.weight")->dims = {0, 16};
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_v.weight")->dims = {1, 1, 1, 1, 1};
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        // A q8_0 row must be whole blocks.
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_v.weight")->dtype = uint32_t(DType::Q8_0);
        b.find("blk.0.attn_v.weight")->dims = {17, 30};
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
}

void test_version_and_architecture() {
    auto b = make_tiny_llama(small_spec());
    b.version = 2;
    CHECK_STATUS(load_file(b.build()), EDGERT_ERR_VERSION);
    CHECK(message_has("version 2"));

    b = make_tiny_llama(small_spec());
    b.version = 0;
    CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);

    TinyLlamaSpec spec = small_spec();
    spec.architecture = "mamba";
    CHECK_STATUS(load_file(make_tiny_llama(spec).build()), EDGERT_ERR_UNSUPPORTED);
    CHECK(message_has("mamba"));

    b = make_tiny_llama(small_spec());
    const std::string from = "\"format_version\": 1";
    b.metadata.replace(b.metadata.find(from), from.size(), "\"format_version\": 3");
    CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_VERSION);
}

void test_required_tensors_and_shapes() {
    const TinyLlamaSpec spec = small_spec();
    for (const char* name : {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight",
                             "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                             "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
                             "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"}) {
        auto b = make_tiny_llama(spec);
        b.remove(name);
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
        CHECK_MSG(message_has(name) && message_has("missing"), "message: %s", g_message.c_str());
    }
    {
        TinyLlamaSpec untied = spec;
        untied.tie = false;
        auto b = make_tiny_llama(untied);
        CHECK_STATUS(load_bytes(b.build()), EDGERT_OK);
        b.remove("output.weight");
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("output.weight"));
    }
    {
        TinyLlamaSpec biased = spec;
        biased.bias = true;
        auto b = make_tiny_llama(biased);
        CHECK_STATUS(load_bytes(b.build()), EDGERT_OK);
        b.remove("blk.0.attn_k.bias");
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        // The right number of bytes in the wrong shape: [kv_dim, H] stored as [H, kv_dim].
        auto b = make_tiny_llama(spec);
        b.find("blk.0.attn_k.weight")->dims = {32, 16};
        CHECK_STATUS(load_file(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("blk.0.attn_k.weight") && message_has("shape"));
    }
    {
        auto b = make_tiny_llama(spec);
        b.tensors.push_back(random_tensor("blk.7.attn_q.weight", DType::F32, {32, 32}, 1.f, 1));
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
        CHECK(message_has("blk.7.attn_q.weight"));
    }
    {
        // Norms must be f32 (docs/format.md).
        auto b = make_tiny_llama(spec);
        *b.find("output_norm.weight") = random_tensor("output_norm.weight", DType::F16, {32}, 1.f, 1);
        CHECK_STATUS(load_bytes(b.build()), EDGERT_ERR_FORMAT);
    }
    {
        // Every weight dtype loads.
        for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
            TinyLlamaSpec q = spec;
            q.weight_type = t;
            q.embd_type = t;
            CHECK_STATUS(load_bytes(make_tiny_llama(q).build(), true), EDGERT_OK);
        }
    }
}

void test_hparams() {
    auto with = [](const std::string& from, const std::string& to) {
        auto b = make_tiny_llama(small_spec());
        size_t at = b.metadata.find(from);
        if (at == std::string::npos) std::abort();  // the test itself is wrong
        b.metadata.replace(at, from.size(), to);
        return b.build();
    };
    CHECK_STATUS(load_bytes(with("\"num_kv_heads\": 1", "\"num_kv_heads\": 3")), EDGERT_ERR_FORMAT);
    CHECK(message_has("num_kv_heads"));
    CHECK_STATUS(load_bytes(with("\"vocab_size\": 32", "\"vocab_size\": -32")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"vocab_size\": 32", "\"vocab_size\": 32.5")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"vocab_size\": 32", "\"vocab_size\": 33")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"hidden_size\": 32", "\"hidden_size\": 0")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"hidden_size\": 32", "\"hidden_size\": 99999999999")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"head_dim\": 16", "\"head_dim\": 15")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"tie_embeddings\": true", "\"tie_embeddings\": 1")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"context_length\": 64, ", "")), EDGERT_ERR_FORMAT);
    CHECK(message_has("context_length"));
    CHECK_STATUS(load_bytes(with("\"eos_token_ids\": [2]", "\"eos_token_ids\": [32]")), EDGERT_ERR_FORMAT);
    CHECK_STATUS(load_bytes(with("\"bos_token_id\": 1", "\"bos_token_id\": null")), EDGERT_OK);
    CHECK_STATUS(load_bytes(with("\"format\": \"edgert\"", "\"format\": \"gguf\"")), EDGERT_ERR_FORMAT);
}

void test_malformed_json() {
    const std::string good = make_tiny_llama(small_spec()).metadata;
    auto status_with_metadata = [](const std::string& meta) {
        auto b = make_tiny_llama(small_spec());
        b.metadata = meta;
        return load_bytes(b.build());
    };
    const std::string cases[] = {
        "",
        "{",
        good.substr(0, good.size() - 1),                       // unterminated object
        good + "x",                                            // trailing garbage
        good.substr(0, good.size() - 1) + ",}",                // trailing comma
        "[" + good + "]",                                      // not an object at the top
        "{\"format\": \"edgert\", \"format\": \"edgert\"}",    // duplicate key
        "{\"a\": 01}",                                         // leading zero
        "{\"a\": NaN}",
        "{\"a\": 1e999}",                                      // overflows a double
        "{\"a\": \"\\ud800\"}",                                // lone high surrogate
        "{\"a\": \"\\udc00\"}",                                // lone low surrogate
        "{\"a\": \"\\ud800\\u0041\"}",                         // high surrogate + non-surrogate
        "{\"a\": \"\\x41\"}",                                  // invalid escape
        "{\"a\": \"\\u12G4\"}",
        "{\"a\": \"tab\there\"}",                              // raw control character
        "{\"a\": \"\xC0\xAF\"}",                               // overlong UTF-8
        "{\"a\": \"\xED\xA0\x80\"}",                           // UTF-8-encoded surrogate
        "{\"a\": \"\xF5\x80\x80\x80\"}",                       // above U+10FFFF
        "{\"a\": tru}",
        "{'a': 1}",
        std::string(100000, '[') + std::string(100000, ']'),  // far too deep: no stack overflow
    };
    int i = 0;
    for (const auto& meta : cases) {
        edgert_status st = status_with_metadata(meta);
        CHECK_MSG(st == EDGERT_ERR_FORMAT, "malformed JSON case %d gave %s", i, edgert_status_string(st));
        ++i;
    }
}

// Random corruption with the header CRC recomputed, so the garbage reaches the table parser and
// the architecture checks instead of stopping at the checksum. Whatever loads must also run.
void test_random_corruption_with_valid_crc() {
    auto bytes = make_tiny_llama(small_spec()).build();
    const FileLayout l = read_layout(bytes);
    const size_t end_of_table = l.table_offset + l.table_size;
    uint64_t state = 12345;
    auto next = [&state] {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return uint32_t(state >> 33);
    };
    int loaded = 0, unexpected = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        auto bad = bytes;
        const int n_changes = 1 + int(next() % 4);
        for (int c = 0; c < n_changes; ++c) {
            // Mostly the structured part (header, metadata, table), sometimes the weights.
            const size_t at = (next() % 8) ? 8 + next() % (end_of_table - 8) : next() % bad.size();
            bad[at] = uint8_t(next());
        }
        if (next() % 8) refresh_header_crc(bad);
        edgert_status st;
        std::unique_ptr<edgert::Model> model;
        try {
            model = edgert::load_model(edgert::MappedFile::from_bytes(bad), false);
            st = EDGERT_OK;
        } catch (const edgert::StatusError& e) {
            st = e.status();
        }
        if (st != EDGERT_OK && st != EDGERT_ERR_FORMAT && st != EDGERT_ERR_UNSUPPORTED &&
            st != EDGERT_ERR_VERSION) {
            ++unexpected;
        }
        if (model) {
            ++loaded;
            edgert_context_params p = edgert_context_default_params();
            p.n_ctx = 8;
            p.n_threads = 1;
            edgert::Context ctx(*model, edgert::resolve_context_config(*model, p));
            const int32_t toks[] = {0, 1, 2};
            std::vector<float> logits(size_t(model->meta.hparams.vocab_size));
            ctx.eval(toks, 3, logits.data(), false);
        }
    }
    CHECK_MSG(unexpected == 0, "%d corruptions gave a status other than FORMAT/VERSION/UNSUPPORTED", unexpected);
    std::printf("random corruption: %d of 3000 variants still loaded (and ran)\n", loaded);
}

void test_io_errors() {
    edgert_model* model = nullptr;
    CHECK_STATUS(edgert_model_load("/nonexistent/dir/model.edgt", nullptr, &model), EDGERT_ERR_IO);
    CHECK(model == nullptr);
    CHECK_STATUS(edgert_model_load("/tmp", nullptr, &model), EDGERT_ERR_IO);  // a directory
    CHECK_STATUS(edgert_model_load(nullptr, nullptr, &model), EDGERT_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(edgert_model_load("/tmp/x.edgt", nullptr, nullptr), EDGERT_ERR_INVALID_ARGUMENT);
}

}  // namespace

int main() {
    test_valid_file_loads();
    test_truncation_at_every_byte();
    test_flipped_bytes();
    test_header_offsets_past_end();
    test_tensor_entries();
    test_version_and_architecture();
    test_required_tensors_and_shapes();
    test_hparams();
    test_malformed_json();
    test_random_corruption_with_valid_crc();
    test_io_errors();
    return edgert_test::finish("test_loader_bad_input");
}
