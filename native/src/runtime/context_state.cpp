// context_state.cpp — Context::save / Context::load: the KV-cache state as a file.
//
// Layout (little-endian; every edgert target is):
//   0  char[8] magic "EDGTKVS\0"        36 i32 n_past
//   8  u32 version (2 or 3)             40 u64 payload bytes
//   12 u32 model id (below)             48 u32 CRC-32 of the payload
//   16 i32 num_layers, num_kv_heads,    52 u32 CRC-32 of bytes [0, 52)
//      head_dim, k_type, v_type         56 payload: n_past i32 token ids, then for each layer and
//                                          KV head, the K rows of positions [first, n_past), then
//                                          (Q4 K only, n_past > 0) position 0's exact key and the
//                                          offsets of the blocks that cover those positions, then
//                                          the V rows of [first, n_past)
// first is 0, except in version 3 for a sliding-window layer, which keeps only what continuing
// reads (KvCache::needed_from: the window of position n_past, for Q4 keys from the start of the
// block before the next new one). A model with sliding layers writes version 3, any other
// version 2 (the same bytes as before windows existed).
// Version 1 had no offsets; its Q4 K rows were stored against a zero offset, so they load as
// version 2 rows with zero offsets and row 0 decoded as the exact key.
// Rows are copied as the cache holds them (kv_attention.h), so a round trip is bit-exact and a
// continued conversation produces exactly the tokens it would have without the round trip.
// The model id is a CRC-32 over the metadata JSON and every tensor's table entry (name, dtype,
// dims, size, CRC), so a state never lands on another model, even one with equal hparams.
#include <algorithm>
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
constexpr uint32_t kStateVersion = 3;
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

bool has_windows(const KvCache& kv) {
    for (int l = 0; l < kv.n_layers(); ++l) {
        if (kv.sliding_window(l) > 0) return true;
    }
    return false;
}

// The version this context writes (see the banner).
uint32_t version_for(const KvCache& kv) { return has_windows(kv) ? 3 : 2; }

// The first position of a layer's rows in a state of this version.
int32_t first_position(const KvCache& kv, int layer, int32_t n_past, uint32_t version) {
    return version >= 3 ? kv.needed_from(layer, n_past) : 0;
}

// Bytes of Q4 key state for positions [first, n_past): the sink row and the covering blocks.
size_t offset_bytes(const KvCache& kv, int32_t first, int32_t n_past) {
    if (!kv.offset_state(0, 0) || n_past <= 0) return 0;
    const int64_t blocks = (n_past - 1) / kKvOffsetBlock - first / kKvOffsetBlock + 1;
    return size_t(1 + blocks) * size_t(kv.head_dim()) * sizeof(uint16_t);
}

// The byte ranges of rows [first, n_past) of one head in file order: one piece, or two where a
// ring wraps. `row` is the row size, `base` the head's row 0.
template <class P>
void row_pieces(const KvCache& kv, int layer, int32_t first, int32_t n_past, P* base, size_t row,
                std::vector<std::pair<P*, size_t>>& out) {
    for (int32_t p = first; p < n_past;) {
        const int r = kv.row_of(layer, p);
        const int32_t n = kv.ring(layer) ? std::min(n_past - p, kv.ring(layer) - r) : n_past - p;
        out.emplace_back(base + size_t(r) * row, size_t(n) * row);
        p += n;
    }
}

// Pieces of the sink and block offsets for [first, n_past), in file order (KV is a KvCache,
// const for save).
template <class KV, class P>
void offset_pieces(KV& kv, int layer, int head, int32_t first, int32_t n_past,
                   std::vector<std::pair<P*, size_t>>& out) {
    if (offset_bytes(kv, first, n_past) == 0) return;
    const size_t bytes = size_t(kv.head_dim()) * sizeof(uint16_t);
    out.emplace_back(reinterpret_cast<P*>(kv.offset_state(layer, head)), bytes);
    for (int64_t b = first / kKvOffsetBlock; b <= (n_past - 1) / kKvOffsetBlock; ++b) {
        out.emplace_back(reinterpret_cast<P*>(kv.block_offset(layer, head, b * kKvOffsetBlock)), bytes);
    }
}

// The header this context would write for n_past tokens (payload CRC left 0).
StateHeader expected_header(const Context& c, int32_t n_past, uint32_t version) {
    const KvCache& kv = c.kv();
    StateHeader h;
    h.version = version;
    h.model_id = model_id(c.model());
    h.num_layers = kv.n_layers();
    h.num_kv_heads = c.model().meta.hparams.num_kv_heads;  // the maximum when layers differ
    h.head_dim = kv.head_dim();
    h.k_type = static_cast<int32_t>(kv.k_type());
    h.v_type = static_cast<int32_t>(kv.v_type());
    h.n_past = n_past;
    h.payload_bytes = uint64_t(n_past) * sizeof(int32_t);
    for (int l = 0; l < kv.n_layers(); ++l) {
        const int32_t first = first_position(kv, l, n_past, version);
        const uint64_t offsets = version >= 2 ? offset_bytes(kv, first, n_past) : 0;
        h.payload_bytes += uint64_t(kv.n_kv_heads(l)) *
                           (uint64_t(n_past - first) * (kv.k_row_bytes() + kv.v_row_bytes()) + offsets);
    }
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
    const uint32_t version = version_for(kv_);
    StateHeader h = expected_header(*this, n_past_, version);
    // Payload pieces in file order; the CRC runs over them before anything is written, so the
    // header can go first.
    std::vector<std::pair<const uint8_t*, size_t>> pieces;
    pieces.emplace_back(reinterpret_cast<const uint8_t*>(tokens_.data()), tokens_.size() * sizeof(int32_t));
    for (int l = 0; l < kv_.n_layers(); ++l) {
        const int32_t first = first_position(kv_, l, n_past_, version);
        for (int hd = 0; hd < kv_.n_kv_heads(l); ++hd) {
            row_pieces(kv_, l, first, n_past_, kv_.k_head(l, hd), kv_.k_row_bytes(), pieces);
            offset_pieces(kv_, l, hd, first, n_past_, pieces);
            row_pieces(kv_, l, first, n_past_, kv_.v_head(l, hd), kv_.v_row_bytes(), pieces);
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
    if (version < 3 && has_windows(kv_)) {
        fail(EDGERT_ERR_FORMAT, what + "has state format version " + std::to_string(version) +
                                     ", which cannot hold sliding-window layers; save it again");
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
        kv_.trim(0);
        n_past_ = 0;
        return;
    }
    tokens_.assign(reinterpret_cast<const int32_t*>(p), reinterpret_cast<const int32_t*>(p) + h.n_past);
    p += size_t(h.n_past) * sizeof(int32_t);
    kv_.trim(0);
    std::vector<std::pair<uint8_t*, size_t>> pieces;
    for (int l = 0; l < kv_.n_layers(); ++l) {
        const int32_t first = first_position(kv_, l, h.n_past, version);
        for (int hd = 0; hd < kv_.n_kv_heads(l); ++hd) {
            pieces.clear();
            row_pieces(kv_, l, first, h.n_past, kv_.k_head(l, hd), kv_.k_row_bytes(), pieces);
            const size_t n_rows = pieces.size();
            offset_pieces(kv_, l, hd, first, h.n_past, pieces);
            const size_t n_offsets = pieces.size() - n_rows;
            if (version < 2 && n_offsets > 0) {
                // Version 1: no offsets in the file (rows against a zero offset, row 0 exact).
                for (size_t i = n_rows; i < pieces.size(); ++i) std::memset(pieces[i].first, 0, pieces[i].second);
                pieces.resize(n_rows);
            }
            row_pieces(kv_, l, first, h.n_past, kv_.v_head(l, hd), kv_.v_row_bytes(), pieces);
            for (const auto& [dst, n] : pieces) {
                std::memcpy(dst, p, n);
                p += n;
            }
            if (version < 2 && n_offsets > 0) {
                std::vector<float> row0(size_t(kv_.head_dim()));
                kv_load_row(kv_.k_type(), true, kv_.k_head(l, hd), kv_.head_dim(), row0.data());
                kv_sink_row(row0.data(), kv_.head_dim(), kv_.offset_state(l, hd));
            }
        }
        kv_.set_kept_from(l, first);
    }
    n_past_ = h.n_past;
}

}  // namespace edgert
