// fuzz_common.h — what the native fuzz targets share: a scratch file per process (the C API loads
// from a path), the checksum fix-ups that let mutations reach the parsers behind a CRC, the tiny
// model the state target runs, and the oracle every target applies to a failed call.
//
// A finding is anything a sanitizer reports, a crash, a hang past run.sh's -timeout, an
// allocation past its -malloc_limit_mb, or an abort() from expect_failure(): a status the C API
// does not document for that call, or an error message that is empty or not valid UTF-8 (it
// becomes a Python str and a Java String).
#pragma once
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/crc32.h"
#include "edgert.h"
#include "edgt_writer.h"

namespace edgert_fuzz {

[[noreturn]] inline void finding(const char* fmt, ...) {
    std::va_list ap;
    va_start(ap, fmt);
    std::fputs("FUZZ FINDING: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    std::abort();
}

// /dev/shm where it exists (a file write per execution stays in RAM), unique per process.
inline std::string scratch_path(const char* stem) {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/edgert_fuzz_" + std::to_string(getpid()) +
           "_" + stem;
}

inline void write_all(const std::string& path, const uint8_t* data, size_t size) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) finding("cannot write the scratch file %s", path.c_str());
    const bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
    if (std::fclose(f) != 0 || !ok) finding("short write to the scratch file %s", path.c_str());
}

inline uint32_t crc32_of(const uint8_t* p, size_t n) { return edgert::crc32_update(0, p, n); }

inline uint64_t get_u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

inline void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Recomputes a .edgt header CRC (docs/format.md: bytes [0, 60), then the metadata, then the
// table) when the header's offsets lie inside the buffer; otherwise leaves it for the loader to
// refuse. Without this nearly every mutation of the metadata or table would stop at the CRC.
inline void fix_edgt_header_crc(std::vector<uint8_t>& b) {
    if (b.size() < 64) return;
    const uint64_t mo = get_u64(&b[8]), ms = get_u64(&b[16]), to = get_u64(&b[24]), ts = get_u64(&b[32]);
    if (mo > b.size() || ms > b.size() - mo || to > b.size() || ts > b.size() - to) return;
    uint32_t crc = crc32_of(b.data(), 60);
    crc = edgert::crc32_update(crc, b.data() + mo, size_t(ms));
    crc = edgert::crc32_update(crc, b.data() + to, size_t(ts));
    put_u32(&b[60], crc);
}

// The state file's two CRCs (runtime/context_state.cpp: payload CRC at 48 over bytes [56, end),
// header CRC at 52 over bytes [0, 52)).
inline void fix_state_crcs(std::vector<uint8_t>& b) {
    if (b.size() < 56) return;
    put_u32(&b[48], crc32_of(b.data() + 56, b.size() - 56));
    put_u32(&b[52], crc32_of(b.data(), 52));
}

// UTF-8 as RFC 3629 defines it: no overlong forms, surrogates or code points above U+10FFFF.
inline bool is_valid_utf8(const char* s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s);
    while (*p) {
        const unsigned c = *p;
        int n;
        uint32_t cp;
        if (c < 0x80) { ++p; continue; }
        if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
        else return false;
        for (int i = 1; i <= n; ++i) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        p += n + 1;
    }
    return true;
}

// The oracle of a call that returned `st`: OK, or one of the documented failures with a
// non-empty valid UTF-8 message. Returns true when the call succeeded.
inline bool check_status(const char* call, edgert_status st,
                         std::initializer_list<edgert_status> allowed) {
    if (st == EDGERT_OK) return true;
    const char* msg = edgert_last_error();
    bool ok = false;
    for (edgert_status a : allowed) ok = ok || a == st;
    if (!ok) finding("%s returned %s, which it must not for any input: %s", call, edgert_status_string(st), msg);
    if (!*msg) finding("%s returned %s with an empty message", call, edgert_status_string(st));
    if (!is_valid_utf8(msg)) finding("%s returned a message that is not valid UTF-8: %s", call, msg);
    return false;
}

// The fixed model of the state target (and of its seeds): one layer, head_dim 32 so every KV type
// applies, q8_0 weights so decode runs the int8 activation quantizer.
inline std::vector<uint8_t> state_target_model() {
    edgert_test::TinyLlamaSpec s;
    s.vocab = 32;
    s.hidden = 64;
    s.ffn = 64;
    s.layers = 1;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 32;
    s.context = 128;
    s.weight_type = edgert::DType::Q8_0;
    s.seed = 7;
    return edgert_test::make_tiny_llama(s).build();
}

// The state target's context: n_ctx past one Q4 key offset block (64 positions), KV types from
// the input's first byte (k = bits 0-1, v = bits 2-3, each an edgert_kv_type).
constexpr int32_t kStateCtx = 80;
inline edgert_context_params state_target_params(uint8_t selector) {
    edgert_context_params p = edgert_context_default_params();
    p.n_ctx = kStateCtx;
    p.n_threads = 1;
    p.n_batch = 16;
    p.kv_type_k = selector & 3;
    p.kv_type_v = (selector >> 2) & 3;
    return p;
}

}  // namespace edgert_fuzz
