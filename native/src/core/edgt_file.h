// edgt_file.h — the container layer of a .edgt file (docs/format.md): header, metadata bytes,
// tensor table and tensor data, validated without trusting a single offset or size.
//
// This layer knows nothing about architectures; metadata.h reads the JSON and models/ check
// which tensors an architecture needs.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "kernels/dtypes.h"

namespace edgert {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kHeaderSize = 64;
constexpr uint64_t kDataAlignment = 64;
constexpr int kMaxDims = 4;
constexpr uint16_t kMaxTensorNameLen = 1024;

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    int n_dims = 0;
    int64_t dims[kMaxDims] = {0, 0, 0, 0};  // outermost first
    uint64_t offset = 0;                    // relative to data_offset
    uint64_t size = 0;                      // bytes
    uint32_t crc32 = 0;
    uint64_t n_elements = 0;
    const uint8_t* data = nullptr;          // into the mapping
};

class EdgtFile {
public:
    // Parses and validates; throws StatusError:
    //   EDGERT_ERR_FORMAT      bad magic, truncation, bad offsets/sizes/alignment, CRC mismatch,
    //                          duplicate names, overlapping tensors
    //   EDGERT_ERR_VERSION     version newer than kFormatVersion
    //   EDGERT_ERR_UNSUPPORTED a tensor with an unknown dtype (the message names it and the id)
    // verify_checksums also checks every tensor's CRC-32 (reads all the weights).
    static std::unique_ptr<EdgtFile> parse(MappedFile bytes, bool verify_checksums);

    uint32_t version() const { return version_; }
    uint64_t file_size() const { return bytes_.size(); }
    std::string_view metadata() const { return metadata_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find(const std::string& name) const;
    void drop_pages(const TensorInfo& t) const { bytes_.drop_pages(t.data, t.size); }

private:
    MappedFile bytes_;
    uint32_t version_ = 0;
    std::string_view metadata_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string, size_t> index_;
};

}  // namespace edgert
