// test_hostile_files.cpp — issue 15's native classes, each from an input that broke the runtime
// before its fix (found by fuzz/native or named in the issue), with the bound docs/security.md
// states:
//   - memory before validation: counts from the file (num_layers, head_dim, tensor_count, JSON
//     values, a state file's size) are checked against what the file holds before anything is
//     sized from them; the heap a refused load takes is measured here (operator new is counted);
//   - non-finite weights: verify_checksums refuses them naming the tensor; without it, inference
//     on them is defined (NaN logits, refused by the sampler), which the sanitizer build checks;
//   - names: a tensor name that is not UTF-8 is a FORMAT error whose message is valid UTF-8;
//   - sizes from the caller: KV/scratch sizing that overflows 64 bits is OUT_OF_MEMORY.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>
#include <string>
#include <unistd.h>
#include <vector>

#include "check.h"
#include "core/json.h"
#include "core/message_text.h"
#include "core/model_loader.h"
#include "core/status_error.h"
#include "edgt_writer.h"
#include "kernels/kernels.h"
#include "runtime/context.h"

// --- heap accounting: every operator new of this process --------------------------------------

namespace {
std::atomic<int64_t> g_heap{0}, g_heap_peak{0};

void* counted_alloc(size_t n, size_t align) {
    void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                                : std::malloc(n ? n : 1);
    if (!p) throw std::bad_alloc();
    const int64_t now = g_heap += int64_t(malloc_usable_size(p));
    for (int64_t peak = g_heap_peak; now > peak && !g_heap_peak.compare_exchange_weak(peak, now);) {
    }
    return p;
}

void counted_free(void* p) {
    if (!p) return;
    g_heap -= int64_t(malloc_usable_size(p));
    std::free(p);
}
}  // namespace

void* operator new(size_t n) { return counted_alloc(n, 0); }
void* operator new[](size_t n) { return counted_alloc(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return counted_alloc(n, size_t(a)); }
void* operator new[](size_t n, std::align_val_t a) { return counted_alloc(n, size_t(a)); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, size_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { counted_free(p); }

using namespace edgert_test;
using edgert::DType;

namespace {

// What one call cost: its status, the heap it took at its peak above what was live before, and
// its wall time.
struct Cost {
    edgert_status status;
    std::string message;
    int64_t peak_heap;
    double seconds;
};

template <class F>
Cost measure(F&& call) {
    const int64_t base = g_heap;
    g_heap_peak = base;
    const auto t0 = std::chrono::steady_clock::now();
    const edgert_status st = call();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {st, st == EDGERT_OK ? "" : edgert_last_error(), g_heap_peak - base, s};
}

edgert_status load(const std::vector<uint8_t>& bytes, bool verify = false, edgert_model** keep = nullptr) {
    const std::string path = temp_path("hostile");
    write_file(path, bytes);
    edgert_model_params p = edgert_model_default_params();
    p.verify_checksums = verify;
    edgert_model* m = nullptr;
    const edgert_status st = edgert_model_load(path.c_str(), &p, &m);
    unlink(path.c_str());
    if (keep) *keep = m;
    else edgert_model_free(m);
    return st;
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
    return s;
}

std::vector<uint8_t> with_metadata(const std::string& from, const std::string& to, TinyLlamaSpec spec = small()) {
    EdgtBuilder b = make_tiny_llama(spec);
    const size_t at = b.metadata.find(from);
    if (at == std::string::npos) std::abort();  // the test itself is wrong
    b.metadata.replace(at, from.size(), to);
    return b.build();
}

bool has(const std::string& s, const char* needle) { return s.find(needle) != std::string::npos; }

// The bound a refused hostile file must stay within (docs/security.md: the heap of a load is
// linear in the metadata and table sizes; these files have ~1 KB of each).
constexpr int64_t kSmallLoadHeap = 1 << 20;

void test_layer_count_beyond_the_file() {
    // The case: ~3 million layers allocated ~2 GB before the missing tensors were noticed.
    const Cost c = measure([] { return load(with_metadata("\"num_layers\": 1", "\"num_layers\": 3000000")); });
    CHECK_STATUS(c.status, EDGERT_ERR_FORMAT);
    CHECK_MSG(has(c.message, "blk.1.") && has(c.message, "missing") && has(c.message, "num_layers is 3000000"),
              "message: %s", c.message.c_str());
    CHECK_MSG(c.peak_heap < kSmallLoadHeap, "refusing 3,000,000 layers took %lld bytes of heap",
              (long long)c.peak_heap);
    CHECK_MSG(c.seconds < 1.0, "refusing 3,000,000 layers took %.2f s", c.seconds);
}

void test_head_dim_beyond_the_file() {
    // The case: a head size near 2^31 allocated 4 GB for RoPE frequencies and computed
    // for 12 s before the shape check. num_heads * head_dim stays below 2^31 (metadata's check).
    const Cost c = measure([] {
        return load(with_metadata("\"num_heads\": 2, \"num_kv_heads\": 1, \"head_dim\": 16",
                                  "\"num_heads\": 1, \"num_kv_heads\": 1, \"head_dim\": 2147483646"));
    });
    CHECK_STATUS(c.status, EDGERT_ERR_FORMAT);
    CHECK_MSG(has(c.message, "blk.0.attn_q.weight") && has(c.message, "2147483646"), "message: %s", c.message.c_str());
    CHECK_MSG(c.peak_heap < kSmallLoadHeap, "refusing head_dim 2^31-2 took %lld bytes of heap", (long long)c.peak_heap);
    CHECK_MSG(c.seconds < 1.0, "refusing head_dim 2^31-2 took %.2f s", c.seconds);
}

// docs/security.md's load bound: besides the mapping, a load's operator-new heap is at most
// kTableFactor x (metadata + table bytes) + kJsonHeap; the re-laid-out weight copies
// (aligned_alloc, reported by edgert_model_get_layout) come on top and are at most twice the
// quantized weights' bytes.
constexpr int64_t kTableFactor = 16;
constexpr int64_t kJsonHeap = 16 << 20;

int64_t load_bound(const std::vector<uint8_t>& bytes) {
    const FileLayout l = read_layout(bytes);
    return kTableFactor * int64_t(l.metadata_size + l.table_size) + kJsonHeap;
}

void test_load_heap_is_linear_in_table_and_metadata() {
    TinyLlamaSpec s = small();
    s.layers = 40;
    s.weight_type = DType::Q8_0;
    const std::vector<uint8_t> bytes = make_tiny_llama(s).build();
    const FileLayout l = read_layout(bytes);
    edgert_model* m = nullptr;
    const Cost c = measure([&] { return load(bytes, false, &m); });
    CHECK_STATUS(c.status, EDGERT_OK);
    CHECK_MSG(c.peak_heap <= load_bound(bytes), "load took %lld bytes of heap, bound %lld",
              (long long)c.peak_heap, (long long)load_bound(bytes));
    edgert_model_layout layout;
    edgert_model_info info;
    CHECK_STATUS(edgert_model_get_layout(m, &layout), EDGERT_OK);
    CHECK_STATUS(edgert_model_get_info(m, &info), EDGERT_OK);
    CHECK_MSG(layout.bytes <= 2 * info.weights_size, "packed copies %llu > 2 x weights %llu",
              (unsigned long long)layout.bytes, (unsigned long long)info.weights_size);
    std::printf("40-layer q8_0 model: file %zu bytes, metadata+table %llu, load heap peak %lld, packed %llu\n",
                bytes.size(), (unsigned long long)(l.metadata_size + l.table_size), (long long)c.peak_heap,
                (unsigned long long)layout.bytes);
    edgert_model_free(m);

    // The table-heavy worst case: 30,000 minimal tensors (34-byte entries), refused only after
    // the whole table was parsed and indexed (none is a llama tensor).
    EdgtBuilder many = make_tiny_llama(small());
    for (int i = 0; i < 30000; ++i) many.tensors.push_back(random_tensor("t" + std::to_string(i), DType::F32, {1}, 1.f, 1));
    const std::vector<uint8_t> mb = many.build();
    const Cost cm = measure([&] { return load(mb); });
    CHECK_STATUS(cm.status, EDGERT_ERR_FORMAT);
    const FileLayout lm = read_layout(mb);
    CHECK_MSG(cm.peak_heap <= kTableFactor * int64_t(lm.metadata_size + lm.table_size),
              "30,000 tensors: heap %lld > %lld x table", (long long)cm.peak_heap, (long long)kTableFactor);
    std::printf("30,000 tensors: table %llu bytes, load heap peak %lld (%.1fx), %.3f s\n",
                (unsigned long long)lm.table_size, (long long)cm.peak_heap,
                double(cm.peak_heap) / double(lm.table_size), cm.seconds);
}

void test_json_value_count() {
    // 2 bytes of text per value ("0,") but ~150 bytes in memory: a value count cap, not the
    // metadata's size, is what bounds the parse.
    std::string many = "\"future_key\": [";
    for (int i = 0; i < 200000; ++i) many += i ? ",0" : "0";
    many += "]";
    TinyLlamaSpec s = small();
    EdgtBuilder b = make_tiny_llama(s);
    const std::string from = "\"future_key\": [1.5e3, -0.25, {\"nested\": true}]";
    b.metadata.replace(b.metadata.find(from), from.size(), many);
    const std::vector<uint8_t> bytes = b.build();
    const Cost c = measure([&] { return load(bytes); });
    CHECK_STATUS(c.status, EDGERT_ERR_FORMAT);
    CHECK_MSG(has(c.message, "too many JSON values"), "message: %s", c.message.c_str());
    CHECK_MSG(c.peak_heap <= load_bound(bytes), "refusing 200,000 JSON values took %lld bytes of heap",
              (long long)c.peak_heap);
    std::printf("200,000 JSON values: metadata %zu bytes, load heap peak %lld\n", b.metadata.size(),
                (long long)c.peak_heap);
    // Just below the cap parses.
    std::string ok = "[";
    for (size_t i = 0; i + 1 < edgert::kJsonMaxValues; ++i) ok += i ? ",0" : "0";
    ok += "]";
    bool parsed = true;
    try {
        edgert::parse_json(ok.data(), ok.size());
    } catch (const edgert::JsonError&) {
        parsed = false;
    }
    CHECK_MSG(parsed, "%zu JSON values (the cap) were refused", edgert::kJsonMaxValues);
}

// --- non-finite weights -----------------------------------------------------------------------

void put_f32(TensorBlob* t, size_t i, float v) { std::memcpy(t->bytes.data() + 4 * i, &v, 4); }
void put_u16(TensorBlob* t, size_t byte, uint16_t v) { std::memcpy(t->bytes.data() + byte, &v, 2); }

struct Poison {
    const char* what;
    const char* tensor;
    DType weights;
    void (*apply)(TensorBlob*);
};

const Poison kPoisons[] = {
    {"NaN in a norm", "blk.0.attn_norm.weight", DType::Q8_0, [](TensorBlob* t) { put_f32(t, 5, NAN); }},
    {"+Inf in a norm", "output_norm.weight", DType::Q4_0, [](TensorBlob* t) { put_f32(t, 31, INFINITY); }},
    {"-Inf in an f32 matrix", "blk.0.ffn_up.weight", DType::F32, [](TensorBlob* t) { put_f32(t, 100, -INFINITY); }},
    {"Inf in an f16 matrix", "blk.0.attn_q.weight", DType::F16, [](TensorBlob* t) { put_u16(t, 2 * 7, 0x7c00); }},
    {"NaN in a bf16 matrix", "blk.0.attn_v.weight", DType::BF16, [](TensorBlob* t) { put_u16(t, 2 * 3, 0x7fc1); }},
    {"NaN scale in a q8_0 block", "blk.0.ffn_down.weight", DType::Q8_0, [](TensorBlob* t) { put_u16(t, 34 * 2, 0x7e00); }},
    {"Inf scale in a q4_0 block", "blk.0.attn_k.weight", DType::Q4_0, [](TensorBlob* t) { put_u16(t, 18 * 1, 0xfc00); }},
    {"-Inf minimum in a q4_1 block", "blk.0.ffn_gate.weight", DType::Q4_1, [](TensorBlob* t) { put_u16(t, 20 * 4 + 2, 0xfc00); }},
};

int32_t record(int32_t, void*) { return 0; }

void test_non_finite_weights() {
    for (const Poison& p : kPoisons) {
        TinyLlamaSpec s = small();
        s.weight_type = p.weights;
        s.embd_type = p.weights;
        EdgtBuilder b = make_tiny_llama(s);
        TensorBlob* t = b.find(p.tensor);
        p.apply(t);
        const std::vector<uint8_t> bytes = b.build();  // CRCs over the poisoned bytes: only the values are wrong

        // verify: refused at load, naming the tensor.
        const Cost c = measure([&] { return load(bytes, true); });
        CHECK_MSG(c.status == EDGERT_ERR_FORMAT && has(c.message, p.tensor) && has(c.message, "non-finite"),
                  "%s: verify gave %s: %s", p.what, edgert_status_string(c.status), c.message.c_str());

        // Without verify it loads; inference is defined for every kernel table (the sanitizer
        // build fails on any float-to-int conversion of NaN/Inf or signed overflow) and the NaN
        // surfaces as the sampler's refusal, not as tokens.
        for (const std::string& isa : edgert::available_isas()) {
            CHECK_STATUS(edgert_set_isa(isa.c_str()), EDGERT_OK);
            edgert_model* m = nullptr;
            CHECK_STATUS(load(bytes, false, &m), EDGERT_OK);
            if (!m) continue;
            for (int32_t kv : {EDGERT_KV_F16, EDGERT_KV_Q8, EDGERT_KV_Q4}) {
                edgert_context_params cp = edgert_context_default_params();
                cp.n_ctx = 8;
                cp.n_threads = 1;
                cp.kv_type_k = kv;
                cp.kv_type_v = kv;
                edgert_context* ctx = nullptr;
                const edgert_status cst = edgert_context_new(m, &cp, &ctx);
                if (cst == EDGERT_ERR_UNSUPPORTED) continue;  // head_dim 16 has no quantized rows
                CHECK_STATUS(cst, EDGERT_OK);
                edgert_sampler* smp = nullptr;
                CHECK_STATUS(edgert_sampler_new(nullptr, &smp), EDGERT_OK);
                const int32_t prompt[] = {1, 5, 9};
                int32_t n = 0;
                const edgert_status g = edgert_generate(ctx, smp, prompt, 3, 2, nullptr, 0, record, nullptr, &n);
                CHECK_MSG(g == EDGERT_OK || (g == EDGERT_ERR_INVALID_ARGUMENT && has(edgert_last_error(), "NaN")),
                          "%s on %s: generate gave %s: %s", p.what, isa.c_str(), edgert_status_string(g),
                          edgert_last_error());
                edgert_sampler_free(smp);
                edgert_context_free(ctx);
            }
            edgert_model_free(m);
        }
        CHECK_STATUS(edgert_set_isa(edgert::available_isas().front().c_str()), EDGERT_OK);
    }
}

// --- names ------------------------------------------------------------------------------------

void test_names_that_are_not_utf8() {
    const char* bad_names[] = {"blk.0.attn_q.weight\xff", "\xc0\xaf", "blk.\xed\xa0\x80.x"};
    for (const char* name : bad_names) {
        EdgtBuilder b = make_tiny_llama(small());
        b.find("blk.0.attn_q.weight")->name = name;
        const Cost c = measure([&] { return load(b.build()); });
        CHECK_STATUS(c.status, EDGERT_ERR_FORMAT);
        CHECK_MSG(edgert::is_valid_utf8(c.message) && has(c.message, "not valid UTF-8"),
                  "message: %s", c.message.c_str());
    }
    // A valid UTF-8 name carrying a terminal escape, on a tensor the architecture does not know:
    // the message names it with the control character escaped.
    EdgtBuilder extra = make_tiny_llama(small());
    extra.tensors.push_back(random_tensor("a\x1b[31mred", DType::F32, {4}, 1.f, 1));
    CHECK_STATUS(load(extra.build()), EDGERT_ERR_FORMAT);
    CHECK_MSG(has(edgert_last_error(), "a\\x1b[31mred") && !has(edgert_last_error(), "\x1b"),
              "message: %s", edgert_last_error());
    // The invalid byte is shown, escaped.
    EdgtBuilder b = make_tiny_llama(small());
    b.find("blk.0.attn_q.weight")->name = "blk.0.attn_q.weight\xff";
    CHECK_STATUS(load(b.build()), EDGERT_ERR_FORMAT);
    CHECK_MSG(has(edgert_last_error(), "not valid UTF-8") && has(edgert_last_error(), "attn_q.weight\\xff"),
              "message: %s", edgert_last_error());
    // A path that is not UTF-8 reaches the message escaped, too.
    edgert_model* m = nullptr;
    CHECK_STATUS(edgert_model_load("/nonexistent/\xff\xfe.edgt", nullptr, &m), EDGERT_ERR_IO);
    CHECK_MSG(edgert::is_valid_utf8(edgert_last_error()) && has(edgert_last_error(), "\\xff\\xfe"),
              "message: %s", edgert_last_error());
}

void test_message_text() {
    using edgert::escape_invalid_utf8;
    using edgert::quote_bytes;
    CHECK(escape_invalid_utf8("plain \xc3\xa9 \xf0\x9f\x98\x80") == "plain \xc3\xa9 \xf0\x9f\x98\x80");
    CHECK(escape_invalid_utf8("a\xff" "b\xc3") == "a\\xffb\\xc3");
    CHECK(escape_invalid_utf8("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate is not UTF-8
    CHECK(quote_bytes("x\ny\\") == "'x\\x0ay\\x5c'");
    CHECK(quote_bytes(std::string(300, 'a')) == "'" + std::string(200, 'a') + "...'");
    CHECK(edgert::is_valid_utf8(quote_bytes("\xe2\x82\xac\xe2\x82\xac", 4)));  // cut inside a character
}

// --- state files ------------------------------------------------------------------------------

void test_state_file_size_is_checked_before_reading() {
    TinyLlamaSpec s = small();
    edgert_model* m = nullptr;
    CHECK_STATUS(load(make_tiny_llama(s).build(), false, &m), EDGERT_OK);
    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = 16;
    cp.n_threads = 1;
    edgert_context* ctx = nullptr;
    CHECK_STATUS(edgert_context_new(m, &cp, &ctx), EDGERT_OK);
    const int32_t toks[] = {1, 2, 3};
    CHECK_STATUS(edgert_eval(ctx, toks, 3, nullptr, 0), EDGERT_OK);
    const std::string path = temp_path("state");
    CHECK_STATUS(edgert_context_save(ctx, path.c_str()), EDGERT_OK);
    // The same state with 1 GiB of (sparse) trailing bytes: refused from the header and the
    // file size; the load used to read the whole file into memory first.
    CHECK(truncate(path.c_str(), off_t(1) << 30) == 0);
    const Cost c = measure([&] { return edgert_context_load(ctx, path.c_str()); });
    CHECK_STATUS(c.status, EDGERT_ERR_FORMAT);
    CHECK_MSG(has(c.message, "trailing"), "message: %s", c.message.c_str());
    CHECK_MSG(c.peak_heap < kSmallLoadHeap, "refusing a 1 GiB state file took %lld bytes of heap",
              (long long)c.peak_heap);
    CHECK(edgert_context_n_past(ctx) == 3);
    // An empty state (n_past 0) loads and empties the context.
    edgert_context* empty = nullptr;
    CHECK_STATUS(edgert_context_new(m, &cp, &empty), EDGERT_OK);
    CHECK_STATUS(edgert_context_save(empty, path.c_str()), EDGERT_OK);
    CHECK_STATUS(edgert_context_load(ctx, path.c_str()), EDGERT_OK);
    CHECK(edgert_context_n_past(ctx) == 0);
    unlink(path.c_str());
    edgert_context_free(empty);
    edgert_context_free(ctx);
    edgert_model_free(m);
}

// --- sizes from the caller --------------------------------------------------------------------

void test_context_sizing_overflow() {
    // hparams no real file can witness, to reach the products themselves: every factor is
    // in range on its own, their product is not.
    edgert::Model m;
    edgert::Hparams& hp = m.meta.hparams;
    hp.vocab_size = 32;
    hp.hidden_size = 1 << 30;
    hp.intermediate_size = 1 << 30;
    hp.num_layers = (1 << 30) - 1;
    hp.num_heads = 1;
    hp.num_kv_heads = (1 << 30) - 1;
    hp.head_dim = 2;
    hp.context_length = 64;
    edgert::ContextConfig c;
    c.n_ctx = (1 << 30) - 1;
    c.n_batch = (1 << 30) - 1;
    edgert_status st = EDGERT_OK;
    try {
        edgert::Context::required_bytes(m, c);
    } catch (const edgert::StatusError& e) {
        st = e.status();
    }
    CHECK_STATUS(st, EDGERT_ERR_OUT_OF_MEMORY);
}

}  // namespace

int main() {
    test_layer_count_beyond_the_file();
    test_head_dim_beyond_the_file();
    test_json_value_count();
    test_load_heap_is_linear_in_table_and_metadata();
    test_non_finite_weights();
    test_names_that_are_not_utf8();
    test_message_text();
    test_state_file_size_is_checked_before_reading();
    test_context_sizing_overflow();
    return edgert_test::finish("test_hostile_files");
}
