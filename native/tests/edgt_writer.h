// edgt_writer.h — builds .edgt files for the native tests: tiny Llama models with random weights
// of any dtype, plus knobs to break them on purpose (wrong offsets, sizes, dtypes, versions).
//
// Independent of the runtime's loader: it has its own bitwise CRC-32 (zlib's), so a loader bug
// cannot cancel out a writer bug.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/dtypes.h"

namespace edgert_test {

// zlib.crc32, bit by bit.
uint32_t zlib_crc32(uint32_t crc, const void* data, size_t n);

struct TensorBlob {
    std::string name;
    uint32_t dtype = 0;
    std::vector<uint64_t> dims;       // outermost first
    std::vector<uint8_t> bytes;
    std::vector<float> values;        // the float values the bytes encode (for reference math)
    // Overrides of what the table says (empty: the honest value).
    std::optional<uint64_t> offset_field;
    std::optional<uint64_t> size_field;
    std::optional<uint32_t> dtype_field;
};

struct EdgtBuilder {
    uint32_t version = 1;
    std::string metadata;
    std::vector<TensorBlob> tensors;

    std::vector<uint8_t> build() const;
    TensorBlob* find(const std::string& name);
    void remove(const std::string& name);
};

// Where the sections of a built file start (from its header).
struct FileLayout {
    uint64_t metadata_offset, metadata_size, table_offset, table_size, data_offset, data_size;
};
FileLayout read_layout(const std::vector<uint8_t>& bytes);
// Recomputes header_crc32 after a test patched the header, metadata or table on purpose.
void refresh_header_crc(std::vector<uint8_t>& bytes);

struct TinyLlamaSpec {
    int vocab = 96;
    int hidden = 64;
    int ffn = 96;
    int layers = 2;
    int heads = 4;
    int kv_heads = 2;
    int head_dim = 16;
    int context = 64;
    bool tie = true;
    bool bias = false;
    bool rope_freqs = false;
    edgert::DType weight_type = edgert::DType::F32;  // every matrix but the embedding
    edgert::DType embd_type = edgert::DType::F32;
    float rope_theta = 10000.f;
    float eps = 1e-5f;
    uint64_t seed = 1;
    std::string architecture = "llama";
};

std::string tiny_llama_metadata(const TinyLlamaSpec& spec);
EdgtBuilder make_tiny_llama(const TinyLlamaSpec& spec);
// Random tensor of the given dtype; values follow a uniform distribution of the given scale.
TensorBlob random_tensor(const std::string& name, edgert::DType type, std::vector<uint64_t> dims,
                         float scale, uint64_t seed, float offset = 0.f);

void write_file(const std::string& path, const std::vector<uint8_t>& bytes);
// A fresh path in the temp dir (unique per process and call).
std::string temp_path(const std::string& stem);

}  // namespace edgert_test
