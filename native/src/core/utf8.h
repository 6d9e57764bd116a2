// utf8.h — strict UTF-8 decoding and encoding (the tokenizer, the JSON parser).
//
// Strict means RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
// U+10FFFF. The tokenizer refuses text that is not strict UTF-8 (EDGERT_ERR_INVALID_TEXT) rather
// than guess; the detokenizer replaces what it cannot decode with U+FFFD, one per maximal invalid
// subpart, as Unicode §3.9 recommends (and as Rust's String::from_utf8_lossy does, which the
// `tokenizers` reference uses).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace edgert::utf8 {

// Length of the valid sequence starting at s[0] (1..4), or 0 if s[0..n) does not start with a
// complete valid sequence. *cp receives the code point when valid.
inline size_t decode(const unsigned char* s, size_t n, uint32_t* cp) {
    if (n == 0) return 0;
    const unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;  // continuation byte or overlong 2-byte lead
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;   // overlong
        if (c == 0xED && s[1] >= 0xA0) return 0;  // surrogate
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) {
            return 0;
        }
        if (c == 0xF0 && s[1] < 0x90) return 0;   // overlong
        if (c == 0xF4 && s[1] >= 0x90) return 0;  // above U+10FFFF
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    return 0;
}

// Length of the maximal subpart of an ill-formed sequence at s[0] (>= 1), for lossy decoding:
// the longest prefix that could still begin a valid sequence, or 1.
inline size_t invalid_subpart(const unsigned char* s, size_t n) {
    const unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c < 0xE0) {
        need = 2;
    } else if (c >= 0xE0 && c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) {
        ++i;
        while (i < need && i < n && (s[i] & 0xC0) == 0x80) ++i;
    }
    return i;
}

// Whether s[0..n) could be the start of a valid sequence that more bytes would complete.
inline bool incomplete_prefix(const unsigned char* s, size_t n) {
    if (n == 0) return false;
    const size_t part = invalid_subpart(s, n);
    if (part != n) return false;
    const unsigned c = s[0];
    const size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return c >= 0xC2 && c < 0xF5 && n < need;
}

// Byte offset of the first invalid sequence in s[0..n), or n when all of it is valid.
inline size_t first_invalid(const unsigned char* s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (s[i] < 0x80) {
            ++i;
            continue;
        }
        const size_t len = decode(s + i, n - i, &cp);
        if (len == 0) return i;
        i += len;
    }
    return n;
}

inline void append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// Appends s[0..n) to out with every maximal invalid subpart replaced by U+FFFD.
inline void append_lossy(std::string& out, const unsigned char* s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        const size_t len = s[i] < 0x80 ? 1 : decode(s + i, n - i, &cp);
        if (len) {
            out.append(reinterpret_cast<const char*>(s + i), len);
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            i += invalid_subpart(s + i, n - i);
        }
    }
}

}  // namespace edgert::utf8
