// edgt_file.cpp — header and tensor-table validation for .edgt files.
//
// Every size and offset read from the file is untrusted: additions and multiplications are
// overflow-checked, and every read goes through a bounded cursor.
#include "core/edgt_file.h"

#include <algorithm>
#include <cstring>

#include "core/crc32.h"
#include "core/message_text.h"
#include "core/status_error.h"

// Tensor data is used in place (zero copy), so the host must share the file's byte order.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "edgert maps little-endian tensor data in place and needs a little-endian host"
#endif

namespace edgert {
namespace {

[[noreturn]] void format_error(const std::string& msg) {
    fail(EDGERT_ERR_FORMAT, "invalid .edgt file: " + msg);
}

bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

uint16_t read_u16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t read_u32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t read_u64(const uint8_t* p) { return uint64_t(read_u32(p)) | uint64_t(read_u32(p + 4)) << 32; }

// Reads little-endian fields from [p, end), failing with a FORMAT error instead of overrunning.
class Cursor {
public:
    Cursor(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
    bool at_end() const { return p_ == end_; }
    const uint8_t* take(size_t n, const char* what) {
        if (size_t(end_ - p_) < n) format_error(std::string("tensor table ends inside ") + what);
        const uint8_t* r = p_;
        p_ += n;
        return r;
    }
    uint16_t u16(const char* what) { return read_u16(take(2, what)); }
    uint32_t u32(const char* what) { return read_u32(take(4, what)); }
    uint64_t u64(const char* what) { return read_u64(take(8, what)); }

private:
    const uint8_t* p_;
    const uint8_t* end_;
};

struct Header {
    uint32_t version;
    uint64_t metadata_offset, metadata_size;
    uint64_t table_offset, table_size;
    uint64_t data_offset, data_size;
    uint32_t tensor_count;
    uint32_t crc;
};

Header read_header(const uint8_t* p, uint64_t file_size) {
    if (file_size < 4 || std::memcmp(p, "EDGT", 4) != 0) {
        format_error("not an edgert file (the magic bytes 'EDGT' are missing); a GGUF, Hugging "
                     "Face or llama2.c model must be converted first: edgert convert SRC -o "
                     "model.edgt");
    }
    if (file_size < 8) format_error("truncated header");
    Header h;
    h.version = read_u32(p + 4);
    // Checked before the rest: a newer version may lay the header out differently.
    if (h.version > kFormatVersion) {
        fail(EDGERT_ERR_VERSION, "the file has format version " + std::to_string(h.version) +
                                     " but this runtime reads up to version " +
                                     std::to_string(kFormatVersion) + "; upgrade edgert");
    }
    if (h.version == 0) format_error("format version 0 is not valid");
    if (file_size < kHeaderSize) {
        format_error("truncated header (" + std::to_string(file_size) + " of 64 bytes)");
    }
    h.metadata_offset = read_u64(p + 8);
    h.metadata_size = read_u64(p + 16);
    h.table_offset = read_u64(p + 24);
    h.table_size = read_u64(p + 32);
    h.data_offset = read_u64(p + 40);
    h.data_size = read_u64(p + 48);
    h.tensor_count = read_u32(p + 56);
    h.crc = read_u32(p + 60);
    return h;
}

void check_layout(const Header& h, uint64_t file_size) {
    if (h.metadata_offset != kHeaderSize) format_error("metadata_offset must be 64");
    uint64_t meta_end, table_end, data_end;
    if (add_overflows(h.metadata_offset, h.metadata_size, &meta_end) || meta_end > file_size) {
        format_error("metadata extends past the end of the file (truncated?)");
    }
    if (h.table_offset != meta_end) {
        format_error("tensor_table_offset must equal metadata_offset + metadata_size");
    }
    if (add_overflows(h.table_offset, h.table_size, &table_end) || table_end > file_size) {
        format_error("tensor table extends past the end of the file (truncated?)");
    }
    if (h.data_offset % kDataAlignment != 0) format_error("data_offset is not a multiple of 64");
    if (h.data_offset < table_end) format_error("data_offset lies inside the tensor table");
    if (add_overflows(h.data_offset, h.data_size, &data_end) || data_end > file_size) {
        format_error("tensor data extends past the end of the file (truncated?)");
    }
}

std::string dims_string(const TensorInfo& t) {
    std::string s = "[";
    for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
    return s + "]";
}

TensorInfo read_tensor_entry(Cursor& c, const Header& h, const uint8_t* base, uint32_t index) {
    TensorInfo t;
    uint16_t name_len = c.u16("a name length");
    if (name_len < 1 || name_len > kMaxTensorNameLen) {
        format_error("tensor " + std::to_string(index) + " has a name length of " +
                     std::to_string(name_len) + " (must be 1..1024)");
    }
    const uint8_t* name = c.take(name_len, "a tensor name");
    t.name.assign(reinterpret_cast<const char*>(name), name_len);
    if (t.name.find('\0') != std::string::npos) {
        format_error("tensor " + std::to_string(index) + " has a name with a NUL byte: " + quote_bytes(t.name));
    }
    // docs/format.md: names are UTF-8. Checked before the name appears in any other message.
    if (!is_valid_utf8(t.name)) {
        format_error("tensor " + std::to_string(index) + " has a name that is not valid UTF-8: " +
                     quote_bytes(t.name));
    }
    const std::string q = quote_bytes(t.name);
    uint32_t dtype = c.u32("a dtype");
    uint32_t n_dims = c.u32("a dim count");
    if (n_dims < 1 || n_dims > uint32_t(kMaxDims)) {
        format_error("tensor " + q + " has " + std::to_string(n_dims) + " dims (must be 1..4)");
    }
    t.n_dims = int(n_dims);
    uint64_t n_elements = 1;
    for (uint32_t i = 0; i < n_dims; ++i) {
        uint64_t d = c.u64("the dims");
        // int64 range keeps every later signed index computation exact.
        if (d < 1 || d > uint64_t(INT64_MAX)) {
            format_error("tensor " + q + " has a dim of " + std::to_string(d));
        }
        t.dims[i] = int64_t(d);
        if (mul_overflows(n_elements, d, &n_elements) || n_elements > uint64_t(INT64_MAX)) {
            format_error("tensor " + q + " has too many elements");
        }
    }
    t.n_elements = n_elements;
    t.offset = c.u64("an offset");
    t.size = c.u64("a size");
    t.crc32 = c.u32("a checksum");
    if (!dtype_is_known(dtype)) {
        fail(EDGERT_ERR_UNSUPPORTED, "tensor " + q + " has unknown dtype " +
                                         std::to_string(dtype) +
                                         "; this runtime reads f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
                                         "iq4_nl, q3_0, q3_k, q4_k, q5_k, q6_k, iq4_xs");
    }
    t.dtype = DType(dtype);
    const int64_t last = t.dims[t.n_dims - 1];
    const int block = dtype_block_size(t.dtype);
    if (last % block != 0) {
        format_error("tensor " + q + " (" + dtype_name(t.dtype) + ") has a last dim of " +
                     std::to_string(last) + ", not a multiple of the block size " +
                     std::to_string(block));
    }
    uint64_t expected;
    if (mul_overflows(n_elements / uint64_t(block), uint64_t(dtype_block_bytes(t.dtype)), &expected)) {
        format_error("tensor " + q + " is too large");
    }
    if (t.size != expected) {
        format_error("tensor " + q + " " + dims_string(t) + " of dtype " +
                     dtype_name(t.dtype) + " must be " + std::to_string(expected) +
                     " bytes, the table says " + std::to_string(t.size));
    }
    if (t.offset % kDataAlignment != 0) {
        format_error("tensor " + q + " offset " + std::to_string(t.offset) +
                     " is not a multiple of 64");
    }
    uint64_t end;
    if (add_overflows(t.offset, t.size, &end) || end > h.data_size) {
        format_error("tensor " + q + " lies outside the data region");
    }
    t.data = base + h.data_offset + t.offset;
    return t;
}

bool f32_bits_finite(uint32_t u) { return (u & 0x7f800000u) != 0x7f800000u; }
bool f16_bits_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }
bool bf16_bits_finite(uint16_t h) { return (h & 0x7f80u) != 0x7f80u; }

// verify_checksums' second half: every float the tensor stores — elements of f32/f16/bf16, the
// f16 scale (and q4_1 minimum) of each quantized block — must be finite. A NaN or Inf weight
// only ever yields NaN logits, so a file that holds one is refused while its name is known.
void check_finite(const TensorInfo& t) {
    const uint8_t* p = t.data;
    int64_t bad = -1;
    const char* what = "element";
    switch (t.dtype) {
        case DType::F32:
            for (uint64_t i = 0; i < t.n_elements && bad < 0; ++i) {
                if (!f32_bits_finite(read_u32(p + 4 * i))) bad = int64_t(i);
            }
            break;
        case DType::F16:
        case DType::BF16: {
            const bool f16 = t.dtype == DType::F16;
            for (uint64_t i = 0; i < t.n_elements && bad < 0; ++i) {
                const uint16_t h = read_u16(p + 2 * i);
                if (!(f16 ? f16_bits_finite(h) : bf16_bits_finite(h))) bad = int64_t(i);
            }
            break;
        }
        case DType::Q4_0:
        case DType::Q4_1:
        case DType::Q8_0: {
            what = "block";
            const size_t bb = dtype_block_bytes(t.dtype);
            const bool has_min = t.dtype == DType::Q4_1;
            for (uint64_t b = 0; b < t.size / bb && bad < 0; ++b) {
                const uint8_t* blk = p + b * bb;
                if (!f16_bits_finite(read_u16(blk)) || (has_min && !f16_bits_finite(read_u16(blk + 2)))) {
                    bad = int64_t(b);
                }
            }
            break;
        }
    }
    if (bad >= 0) {
        format_error("tensor " + quote_bytes(t.name) + " holds a non-finite value (NaN or Inf) in " +
                     what + " " + std::to_string(bad) + "; the file is corrupt or was converted from "
                     "a broken checkpoint");
    }
}

}  // namespace

std::unique_ptr<EdgtFile> EdgtFile::parse(MappedFile bytes, bool verify_checksums) {
    const uint8_t* base = bytes.data();
    const uint64_t file_size = bytes.size();
    Header h = read_header(base, file_size);
    check_layout(h, file_size);

    const uint8_t* meta = base + h.metadata_offset;
    const uint8_t* table = base + h.table_offset;
    uint32_t crc = crc32_update(0, base, 60);
    crc = crc32_update(crc, meta, size_t(h.metadata_size));
    crc = crc32_update(crc, table, size_t(h.table_size));
    if (crc != h.crc) format_error("header checksum mismatch (the file is corrupt)");

    const uint64_t table_end = h.table_offset + h.table_size;
    for (uint64_t i = table_end; i < h.data_offset; ++i) {
        if (base[i] != 0) format_error("padding before the tensor data is not zero");
    }

    auto file = std::unique_ptr<EdgtFile>(new EdgtFile());
    file->version_ = h.version;
    file->metadata_ = std::string_view(reinterpret_cast<const char*>(meta), size_t(h.metadata_size));

    // Each entry is at least 34 bytes, so a huge tensor_count cannot make us reserve much.
    if (uint64_t(h.tensor_count) * 34 > h.table_size) {
        format_error("tensor_count " + std::to_string(h.tensor_count) +
                     " does not fit in the tensor table");
    }
    file->tensors_.reserve(h.tensor_count);
    Cursor cursor(table, table + h.table_size);
    for (uint32_t i = 0; i < h.tensor_count; ++i) {
        TensorInfo t = read_tensor_entry(cursor, h, base, i);
        if (!file->index_.emplace(t.name, file->tensors_.size()).second) {
            format_error("duplicate tensor name " + quote_bytes(t.name));
        }
        file->tensors_.push_back(std::move(t));
    }
    if (!cursor.at_end()) format_error("tensor table has bytes after the last entry");

    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(file->tensors_.size());
    for (const auto& t : file->tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        if (by_offset[i - 1]->offset + by_offset[i - 1]->size > by_offset[i]->offset) {
            format_error("tensors " + quote_bytes(by_offset[i - 1]->name) + " and " +
                         quote_bytes(by_offset[i]->name) + " overlap");
        }
    }

    if (verify_checksums) {
        for (const auto& t : file->tensors_) {
            if (crc32_update(0, t.data, size_t(t.size)) != t.crc32) {
                format_error("checksum mismatch in tensor " + quote_bytes(t.name) + " (the file is corrupt)");
            }
            check_finite(t);
        }
    }
    file->bytes_ = std::move(bytes);
    return file;
}

const TensorInfo* EdgtFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace edgert
