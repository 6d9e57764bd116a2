// edgt_writer.cpp — the test-side .edgt writer (docs/format.md, written independently of the
// loader).
#include "edgt_writer.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <atomic>
#include <unistd.h>

namespace edgert_test {

using edgert::DType;

uint32_t zlib_crc32(uint32_t crc, const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

namespace {

void put_u16(std::vector<uint8_t>& b, uint16_t v) {
    for (int i = 0; i < 2; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_u64(std::vector<uint8_t>& b, uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void set_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + size_t(i)] = uint8_t(v >> (8 * i));
}
uint64_t get_u64(const std::vector<uint8_t>& b, size_t at) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + size_t(i)];
    return v;
}
uint64_t align64(uint64_t x) { return (x + 63) / 64 * 64; }

struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    float uniform() { return float(next() >> 40) / float(1 << 24) * 2.f - 1.f; }  // [-1, 1)
};

uint64_t hash_name(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
    return h;
}

}  // namespace

TensorBlob random_tensor(const std::string& name, DType type, std::vector<uint64_t> dims,
                         float scale, uint64_t seed, float offset) {
    TensorBlob t;
    t.name = name;
    t.dtype = uint32_t(type);
    t.dims = dims;
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    Rng rng{seed ^ hash_name(name)};
    t.values.resize(n);
    auto push_f16 = [&t](uint16_t h) {
        t.bytes.push_back(uint8_t(h));
        t.bytes.push_back(uint8_t(h >> 8));
    };
    switch (type) {
        case DType::F32:
        case DType::F16:
        case DType::BF16:
            for (uint64_t i = 0; i < n; ++i) {
                float x = offset + scale * rng.uniform();
                if (type == DType::F32) {
                    uint32_t u;
                    std::memcpy(&u, &x, 4);
                    for (int k = 0; k < 4; ++k) t.bytes.push_back(uint8_t(u >> (8 * k)));
                } else if (type == DType::F16) {
                    uint16_t h = edgert::fp32_to_fp16(x);
                    push_f16(h);
                    x = edgert::fp16_to_fp32(h);
                } else {
                    uint16_t h = edgert::fp32_to_bf16(x);
                    push_f16(h);
                    x = edgert::bf16_to_fp32(h);
                }
                t.values[i] = x;
            }
            break;
        case DType::Q8_0:
        case DType::Q4_0:
        case DType::Q4_1:
            if (n % 32) throw std::runtime_error("block dtype needs a multiple of 32 elements");
            for (uint64_t b = 0; b < n / 32; ++b) {
                float* v = &t.values[b * 32];
                if (type == DType::Q8_0) {
                    uint16_t d = edgert::fp32_to_fp16(scale / 127.f * (0.5f + 0.5f * std::fabs(rng.uniform())));
                    push_f16(d);
                    for (int j = 0; j < 32; ++j) {
                        int q = int(std::lround(127.f * rng.uniform()));
                        t.bytes.push_back(uint8_t(int8_t(q)));
                        v[j] = edgert::fp16_to_fp32(d) * float(q);
                    }
                } else {
                    uint16_t d = edgert::fp32_to_fp16(scale / 8.f * (0.5f + 0.5f * std::fabs(rng.uniform())));
                    push_f16(d);
                    uint16_t m = 0;
                    if (type == DType::Q4_1) {
                        m = edgert::fp32_to_fp16(-scale * std::fabs(rng.uniform()));
                        push_f16(m);
                    }
                    uint8_t nib[32];
                    for (int j = 0; j < 32; ++j) nib[j] = uint8_t(rng.next() & 15);
                    for (int j = 0; j < 16; ++j) t.bytes.push_back(uint8_t(nib[j] | nib[j + 16] << 4));
                    for (int j = 0; j < 32; ++j) {
                        v[j] = type == DType::Q4_0
                                   ? edgert::fp16_to_fp32(d) * float(int(nib[j]) - 8)
                                   : edgert::fp16_to_fp32(d) * float(nib[j]) + edgert::fp16_to_fp32(m);
                    }
                }
            }
            break;
    }
    return t;
}

std::vector<uint8_t> EdgtBuilder::build() const {
    std::vector<uint8_t> table;
    std::vector<uint64_t> offsets;
    uint64_t data_cursor = 0, data_end = 0;
    for (const auto& t : tensors) {
        offsets.push_back(data_cursor);
        data_end = data_cursor + t.bytes.size();
        data_cursor = align64(data_end);
        put_u16(table, uint16_t(t.name.size()));
        table.insert(table.end(), t.name.begin(), t.name.end());
        put_u32(table, t.dtype_field.value_or(t.dtype));
        put_u32(table, uint32_t(t.dims.size()));
        for (uint64_t d : t.dims) put_u64(table, d);
        put_u64(table, t.offset_field.value_or(offsets.back()));
        put_u64(table, t.size_field.value_or(uint64_t(t.bytes.size())));
        put_u32(table, zlib_crc32(0, t.bytes.data(), t.bytes.size()));
    }
    const uint64_t meta_off = 64, table_off = meta_off + metadata.size();
    const uint64_t data_off = align64(table_off + table.size());

    std::vector<uint8_t> out;
    for (char c : {'E', 'D', 'G', 'T'}) out.push_back(uint8_t(c));
    put_u32(out, version);
    put_u64(out, meta_off);
    put_u64(out, metadata.size());
    put_u64(out, table_off);
    put_u64(out, table.size());
    put_u64(out, data_off);
    put_u64(out, data_end);
    put_u32(out, uint32_t(tensors.size()));
    put_u32(out, 0);  // header CRC, filled below
    out.insert(out.end(), metadata.begin(), metadata.end());
    out.insert(out.end(), table.begin(), table.end());
    out.resize(data_off + data_end, 0);
    for (size_t i = 0; i < tensors.size(); ++i) {
        std::memcpy(out.data() + data_off + offsets[i], tensors[i].bytes.data(), tensors[i].bytes.size());
    }
    refresh_header_crc(out);
    return out;
}

TensorBlob* EdgtBuilder::find(const std::string& name) {
    for (auto& t : tensors) {
        if (t.name == name) return &t;
    }
    return nullptr;
}

void EdgtBuilder::remove(const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i) {
        if (tensors[i].name == name) {
            tensors.erase(tensors.begin() + std::ptrdiff_t(i));
            return;
        }
    }
}

FileLayout read_layout(const std::vector<uint8_t>& b) {
    return {get_u64(b, 8), get_u64(b, 16), get_u64(b, 24), get_u64(b, 32), get_u64(b, 40), get_u64(b, 48)};
}

void refresh_header_crc(std::vector<uint8_t>& b) {
    const FileLayout l = read_layout(b);
    // A test that broke the layout on purpose gets no CRC: the loader rejects the layout first.
    if (l.metadata_offset > b.size() || l.metadata_size > b.size() - l.metadata_offset ||
        l.table_offset > b.size() || l.table_size > b.size() - l.table_offset) {
        return;
    }
    uint32_t crc = zlib_crc32(0, b.data(), 60);
    crc = zlib_crc32(crc, b.data() + l.metadata_offset, l.metadata_size);
    crc = zlib_crc32(crc, b.data() + l.table_offset, l.table_size);
    set_u32(b, 60, crc);
}

std::string tiny_llama_metadata(const TinyLlamaSpec& s) {
    char hp[1024];
    std::snprintf(hp, sizeof hp,
                  "{\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
                  "\"num_layers\": %d, \"num_heads\": %d, \"num_kv_heads\": %d, \"head_dim\": %d, "
                  "\"rope_theta\": %.1f, \"rms_norm_eps\": %g, \"context_length\": %d, "
                  "\"tie_embeddings\": %s, \"attention_bias\": %s}",
                  s.vocab, s.hidden, s.ffn, s.layers, s.heads, s.kv_heads, s.head_dim,
                  double(s.rope_theta), double(s.eps), s.context, s.tie ? "true" : "false",
                  s.bias ? "true" : "false");
    return std::string("{\"format\": \"edgert\", \"format_version\": 1, \"architecture\": \"") +
           s.architecture + "\", \"name\": \"tiny-llama \\u00e9\\ud83d\\ude00\", \"hparams\": " + hp +
           ", \"tokenizer\": {\"json\": \"{\\\"model\\\": {\\\"type\\\": \\\"BPE\\\"}}\", "
           "\"bos_token_id\": 1, \"eos_token_ids\": [2], \"add_bos\": false, \"pad_token_id\": null}, "
           "\"chat_template\": null, \"future_key\": [1.5e3, -0.25, {\"nested\": true}]}";
}

EdgtBuilder make_tiny_llama(const TinyLlamaSpec& s) {
    EdgtBuilder b;
    b.metadata = tiny_llama_metadata(s);
    const uint64_t H = uint64_t(s.hidden), F = uint64_t(s.ffn), V = uint64_t(s.vocab);
    const uint64_t q_dim = uint64_t(s.heads * s.head_dim), kv_dim = uint64_t(s.kv_heads * s.head_dim);
    const float ws = 1.f / std::sqrt(float(H));
    auto add = [&](const std::string& name, DType t, std::vector<uint64_t> dims, float scale,
                   float offset = 0.f) {
        b.tensors.push_back(random_tensor(name, t, std::move(dims), scale, s.seed, offset));
    };
    add("token_embd.weight", s.embd_type, {V, H}, 1.f);
    add("output_norm.weight", DType::F32, {H}, 0.2f, 1.f);
    if (!s.tie) add("output.weight", s.weight_type, {V, H}, ws);
    if (s.rope_freqs) add("rope_freqs.weight", DType::F32, {uint64_t(s.head_dim / 2)}, 0.5f, 1.5f);
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", DType::F32, {H}, 0.2f, 1.f);
        add(p + "attn_q.weight", s.weight_type, {q_dim, H}, ws);
        add(p + "attn_k.weight", s.weight_type, {kv_dim, H}, ws);
        add(p + "attn_v.weight", s.weight_type, {kv_dim, H}, ws);
        if (s.bias) {
            add(p + "attn_q.bias", DType::F32, {q_dim}, 0.5f);
            add(p + "attn_k.bias", DType::F32, {kv_dim}, 0.5f);
            add(p + "attn_v.bias", DType::F32, {kv_dim}, 0.5f);
        }
        add(p + "attn_output.weight", s.weight_type, {H, q_dim}, 1.f / std::sqrt(float(q_dim)));
        add(p + "ffn_norm.weight", DType::F32, {H}, 0.2f, 1.f);
        add(p + "ffn_gate.weight", s.weight_type, {F, H}, ws);
        add(p + "ffn_up.weight", s.weight_type, {F, H}, ws);
        add(p + "ffn_down.weight", s.weight_type, {H, F}, 1.f / std::sqrt(float(F)));
    }
    return b;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write " + path);
    size_t n = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
    if (n != bytes.size()) throw std::runtime_error("short write to " + path);
}

std::string temp_path(const std::string& stem) {
    static std::atomic<int> counter{0};
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/edgert_test_" + std::to_string(getpid()) +
           "_" + std::to_string(counter++) + "_" + stem + ".edgt";
}

}  // namespace edgert_test
