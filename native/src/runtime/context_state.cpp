// context_state.cpp — Context::save / Context::load: the KV-cache state as a file.
//
// Layout (little-endian; every edgert target is):
//   0  char[8] magic "EDGTKVS\0"        36 i32 n_past
//   8  u32 version (2)                  40 u64 payload bytes
//   12 u32 model id (below)             48 u32 CRC-32 of the payload
//   16 i32 num_layers, num_kv_heads,    52 u32 CRC-32 of bytes [0, 52)
//      head_dim, k_type, v_type         56 payload: n_past i32 token ids, then for each layer and
//                                          KV head, n_past K rows, then (Q4 K only, n_past > 0)
//                                          position 0's exact key and the block offsets that
//                                          cover them, then n_past V rows
// Version 1 had neither; its Q4 K rows were stored against a zero offset, so they load as
// version 2 rows with zero offsets and row 0 decoded as the exact key.
// Rows are copied as the cache holds them (kv_attention.h), so a round trip is bit-exact and a
// continued conversation produces exactly the tokens it would have without the round trip.
// The model id is a CRC-32 over the metadata JSON and every tensor's table entry (name, dtype,
// dims, size, CRC), so a state never lands on another model, even one with equal hparams.
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <vector>

#include "core/crc32.h"
#include "core/message_text.h"
#include "core/status_error.h"
#include "runtime/context.h"

namespace edgert {
namespace {

constexpr char kMagic[8] = {'E', 'D', 'G', 'T', 'K', 'V', 'S', '\0'};
constexpr uint32_t kStateVersion = 2;
constexpr size_t kHeaderBytes = 56;
constexpr size_t kHeaderCrcOffset = 52;

struct StateHeader {
    uint32_t version = kStateVersion;
    uint32_t model_id = 0;
    int32_t num_layers = 0, num_kv_heads = 0, head_dim = 0, k_type = 0, v_type = 0, n_past = 0;
    uint64_t payload_bytes = 0;
    uint32_t payload_crc = 0;
};

uint32_t model_id(const Model& m) {
    const std::string_view json = m.file->metadata();
    uint32_t crc = crc32_update(0, json.data(), json.size());
    for (const TensorInfo& t : m.file->tensors()) {
        crc = crc32_update(crc, t.name.data(), t.name.size());
        const uint32_t dtype = static_cast<uint32_t>(t.dtype);
        crc = crc32_update(crc, &dtype, sizeof dtype);
        crc = crc32_update(crc, t.dims, sizeof(int64_t) * size_t(t.n_dims));
        crc = crc32_update(crc, &t.size, sizeof t.size);
        crc = crc32_update(crc, &t.crc32, sizeof t.crc32);
    }
    return crc;
}

template <class T>
void put(uint8_t* p, T v) { std::memcpy(p, &v, sizeof v); }
template <class T>
T get(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

void encode_header(const StateHeader& h, uint8_t* b) {
    std::memcpy(b, kMagic, 8);
    put(b + 8, h.version);
    put(b + 12, h.model_id);
    put(b + 16, h.num_layers);
    put(b + 20, h.num_kv_heads);
    put(b + 24, h.head_dim);
    put(b + 28, h.k_type);
    put(b + 32, h.v_type);
    put(b + 36, h.n_past);
    put(b + 40, h.payload_bytes);
    put(b + 48, h.payload_crc);
    put(b + kHeaderCrcOffset, crc32_update(0, b, kHeaderCrcOffset));
}

// The header this context would write for n_past tokens (payload CRC left 0).
StateHeader expected_header(const Context& c, int32_t n_past, uint32_t version = kStateVersion) {
    const KvCache& kv = c.kv();
    StateHeader h;
    h.model_id = model_id(c.model());
    h.num_layers = kv.n_layers();
    h.num_kv_heads = kv.n_kv_heads();
    h.head_dim = kv.head_dim();
    h.k_type = static_cast<int32_t>(kv.k_type());
    h.v_type = static_cast<int32_t>(kv.v_type());
    h.n_past = n_past;
    const uint64_t offsets = version >= 2 ? kv.k_offset_bytes(n_past) : 0;
    h.payload_bytes = uint64_t(n_past) * sizeof(int32_t) +
                      uint64_t(kv.n_layers()) * kv.n_kv_heads() *
                          (uint64_t(n_past) * (kv.k_row_bytes() + kv.v_row_bytes()) + offsets);
    return h;
}

struct File {
    std::FILE* f = nullptr;
    ~File() {
        if (f) std::fclose(f);
    }
};

}  // namespace

void Context::save(const std::string& path) const {
    StateHeader h = expected_header(*this, n_past_);
    // Payload pieces in file order; the CRC runs over them before anything is written, so the
    // header can go first.
    std::vector<std::pair<const void*, size_t>> pieces;
    pieces.emplace_back(tokens_.data(), tokens_.size() * sizeof(int32_t));
    for (int l = 0; l < kv_.n_layers(); ++l) {
        for (int hd = 0; hd < kv_.n_kv_heads(); ++hd) {
            pieces.emplace_back(kv_.k_head(l, hd), size_t(n_past_) * kv_.k_row_bytes());
            if (kv_.k_offset_bytes(n_past_) > 0) pieces.emplace_back(kv_.offset_state(l, hd), kv_.k_offset_bytes(n_past_));
            pieces.emplace_back(kv_.v_head(l, hd), size_t(n_past_) * kv_.v_row_bytes());
        }
    }
    for (const auto& [p, n] : pieces) h.payload_crc = crc32_update(h.payload_crc, p, n);
    uint8_t header[kHeaderBytes];
    encode_header(h, header);

    // Written beside the target and renamed, so an interrupted save never leaves a half file
    // under the name a later load would read.
    const std::string tmp = path + ".tmp";
    {
        File out{std::fopen(tmp.c_str(), "wb")};
        if (!out.f) fail(EDGERT_ERR_IO, "cannot open " + quote_bytes(tmp) + " for writing");
        bool ok = std::fwrite(header, 1, kHeaderBytes, out.f) == kHeaderBytes;
        for (const auto& [p, n] : pieces) ok = ok && std::fwrite(p, 1, n, out.f) == n;
        ok = std::fclose(out.f) == 0 && ok;
        out.f = nullptr;
        if (!ok) {
            std::remove(tmp.c_str());
            fail(EDGERT_ERR_IO, "writing " + quote_bytes(tmp) + " failed (disk full?)");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail(EDGERT_ERR_IO, "cannot rename " + quote_bytes(tmp) + " to " + quote_bytes(path));
    }
}

void Context::load(const std::string& path) {
    // Only the header is read before it is checked against this context; the payload buffer is
    // then sized from the context's own shape (at most its KV cache in use), never from a number
    // in the file, so a hostile or huge file costs no memory beyond that.
    File in{std::fopen(path.c_str(), "rb")};
    if (!in.f) fail(EDGERT_ERR_IO, "cannot open " + quote_bytes(path) + " for reading");
    struct stat st;
    if (fstat(fileno(in.f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(EDGERT_ERR_IO, quote_bytes(path) + " is not a readable regular file");
    }
    const uint64_t file_size = uint64_t(st.st_size);
    uint8_t header[kHeaderBytes];
    const size_t got = std::fread(header, 1, kHeaderBytes, in.f);
    if (std::ferror(in.f)) fail(EDGERT_ERR_IO, "reading " + quote_bytes(path) + " failed");
    const std::string what = quote_bytes(path) + " ";
    if (got < kHeaderBytes || std::memcmp(header, kMagic, 8) != 0) {
        fail(EDGERT_ERR_FORMAT, what + "is not an edgert context state (bad magic or shorter than "
                                       "its header); save one with edgert_context_save");
    }
    const uint8_t* b = header;
    const uint32_t version = get<uint32_t>(b + 8);
    if (version > kStateVersion) {
        fail(EDGERT_ERR_VERSION, what + "has state format version " + std::to_string(version) +
                                     "; this runtime reads up to " + std::to_string(kStateVersion));
    }
    if (get<uint32_t>(b + kHeaderCrcOffset) != crc32_update(0, b, kHeaderCrcOffset)) {
        fail(EDGERT_ERR_FORMAT, what + "has a corrupt header (checksum mismatch)");
    }
    StateHeader h;
    h.version = version;
    h.model_id = get<uint32_t>(b + 12);
    h.num_layers = get<int32_t>(b + 16);
    h.num_kv_heads = get<int32_t>(b + 20);
    h.head_dim = get<int32_t>(b + 24);
    h.k_type = get<int32_t>(b + 28);
    h.v_type = get<int32_t>(b + 32);
    h.n_past = get<int32_t>(b + 36);
    h.payload_bytes = get<uint64_t>(b + 40);
    h.payload_crc = get<uint32_t>(b + 48);

    if (h.n_past < 0) fail(EDGERT_ERR_FORMAT, what + "has a negative n_past");
    if (h.n_past > config_.n_ctx) {
        fail(EDGERT_ERR_CONTEXT_OVERFLOW, what + "holds " + std::to_string(h.n_past) +
                                              " tokens but this context has n_ctx " +
                                              std::to_string(config_.n_ctx) + "; create it with a larger n_ctx");
    }
    const StateHeader want = expected_header(*this, h.n_past, version);
    if (h.model_id != want.model_id || h.num_layers != want.num_layers ||
        h.num_kv_heads != want.num_kv_heads || h.head_dim != want.head_dim) {
        fail(EDGERT_ERR_INVALID_ARGUMENT, what + "was saved from another model; load it into a "
                                                 "context of the model that saved it");
    }
    if (h.k_type != want.k_type || h.v_type != want.v_type) {
        fail(EDGERT_ERR_INVALID_ARGUMENT,
             what + "holds KV types (k " + std::to_string(h.k_type) + ", v " + std::to_string(h.v_type) +
                 ") but this context uses (k " + std::to_string(want.k_type) + ", v " +
                 std::to_string(want.v_type) + "); create the context with the saved KV types");
    }
    if (h.payload_bytes != want.payload_bytes || file_size - kHeaderBytes != want.payload_bytes) {
        fail(EDGERT_ERR_FORMAT, what + "is truncated or has trailing bytes: " +
                                     std::to_string(file_size - kHeaderBytes) + " payload bytes, expected " +
                                     std::to_string(want.payload_bytes));
    }
    std::vector<uint8_t> payload(size_t(want.payload_bytes));
    if (std::fread(payload.data(), 1, payload.size(), in.f) != payload.size() || std::fgetc(in.f) != EOF) {
        // The file changed size since fstat (or a read error).
        fail(std::ferror(in.f) ? EDGERT_ERR_IO : EDGERT_ERR_FORMAT,
             what + "changed while it was read, or could not be read");
    }
    const uint8_t* p = payload.data();
    if (crc32_update(0, p, size_t(want.payload_bytes)) != h.payload_crc) {
        fail(EDGERT_ERR_FORMAT, what + "is corrupt (payload checksum mismatch)");
    }
    const int32_t vocab = model_.meta.hparams.vocab_size;
    for (int32_t i = 0; i < h.n_past; ++i) {
        const int32_t t = get<int32_t>(p + size_t(i) * sizeof(int32_t));
        if (t < 0 || t >= vocab) fail(EDGERT_ERR_FORMAT, what + "holds token id " + std::to_string(t) + " outside the vocabulary");
    }

    // Everything is checked; from here on nothing can fail.
    if (h.n_past == 0) {  // an empty state: nothing to copy (and payload.data() may be null)
        tokens_.clear();
        n_past_ = 0;
        return;
    }
    tokens_.assign(reinterpret_cast<const int32_t*>(p), reinterpret_cast<const int32_t*>(p) + h.n_past);
    p += size_t(h.n_past) * sizeof(int32_t);
    for (int l = 0; l < kv_.n_layers(); ++l) {
        for (int hd = 0; hd < kv_.n_kv_heads(); ++hd) {
            const size_t nk = size_t(h.n_past) * kv_.k_row_bytes(), nv = size_t(h.n_past) * kv_.v_row_bytes();
            std::memcpy(kv_.k_head(l, hd), p, nk);
            p += nk;
            const size_t no = kv_.k_offset_bytes(h.n_past);
            if (no > 0 && version >= 2) {
                std::memcpy(kv_.offset_state(l, hd), p, no);
                p += no;
            } else if (no > 0) {
                std::memset(kv_.offset_state(l, hd), 0, no);
                std::vector<float> row0(size_t(kv_.head_dim()));
                kv_load_row(kv_.k_type(), true, kv_.k_head(l, hd), kv_.head_dim(), row0.data());
                kv_sink_row(row0.data(), kv_.head_dim(), kv_.offset_state(l, hd));
            }
            std::memcpy(kv_.v_head(l, hd), p, nv);
            p += nv;
        }
    }
    n_past_ = h.n_past;
}

}  // namespace edgert
