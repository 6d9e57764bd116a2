// unicode_props.cpp — lookups over the generated Unicode tables.
//
// Properties: the generated [first, last, flags] runs are expanded once (thread-safe static) into
// a two-stage table — 4352 block indices for the 256-code-point blocks, then the distinct blocks —
// so flags() is two loads (about 40 KB in all; a flat table would be 1.1 MB).
// NFC follows UAX #15: full canonical decomposition, canonical reordering, canonical composition
// (the reference composition loop of UAX #15 §"Sample code"), Hangul arithmetically.
#include "tokenizer/unicode_props.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/utf8.h"

namespace edgert::unicode {
namespace {

#include "tokenizer/unicode_tables.inc"

constexpr uint32_t kMaxCp = 0x110000;
constexpr uint32_t kHangulS0 = 0xAC00, kHangulL0 = 0x1100, kHangulV0 = 0x1161, kHangulT0 = 0x11A7;
constexpr uint32_t kHangulLN = 19, kHangulVN = 21, kHangulTN = 28;
constexpr uint32_t kHangulNN = kHangulVN * kHangulTN, kHangulSN = kHangulLN * kHangulNN;

struct PropTable {
    std::vector<uint16_t> stage1;  // cp >> 8 -> block
    std::vector<uint8_t> blocks;   // 256 flags per block

    PropTable() {
        std::vector<uint8_t> flat(kMaxCp, 0);
        for (const auto& r : kPropRanges) {
            for (uint32_t cp = r[0]; cp <= r[1]; ++cp) flat[cp] = uint8_t(r[2]);
        }
        stage1.resize(kMaxCp >> 8);
        for (uint32_t b = 0; b < (kMaxCp >> 8); ++b) {
            const uint8_t* block = flat.data() + (size_t(b) << 8);
            size_t found = blocks.size();
            for (size_t off = 0; off < blocks.size(); off += 256) {
                if (std::memcmp(blocks.data() + off, block, 256) == 0) {
                    found = off;
                    break;
                }
            }
            if (found == blocks.size()) blocks.insert(blocks.end(), block, block + 256);
            stage1[b] = uint16_t(found >> 8);
        }
    }
};

const PropTable& props() {
    static const PropTable table;
    return table;
}

uint8_t combining_class(uint32_t cp) {
    size_t lo = 0, hi = sizeof kCombiningClass / sizeof kCombiningClass[0];
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (kCombiningClass[mid][1] < cp) lo = mid + 1;
        else hi = mid;
    }
    const size_t n = sizeof kCombiningClass / sizeof kCombiningClass[0];
    return lo < n && kCombiningClass[lo][0] <= cp ? uint8_t(kCombiningClass[lo][2]) : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp >= kHangulS0 && cp < kHangulS0 + kHangulSN) {
        const uint32_t s = cp - kHangulS0;
        out.push_back(kHangulL0 + s / kHangulNN);
        out.push_back(kHangulV0 + (s % kHangulNN) / kHangulTN);
        if (s % kHangulTN) out.push_back(kHangulT0 + s % kHangulTN);
        return;
    }
    const size_t n = sizeof kDecomposition / sizeof kDecomposition[0];
    const auto* end = kDecomposition + n;
    const auto* it = std::lower_bound(kDecomposition, end, cp,
                                      [](const uint32_t (&row)[3], uint32_t v) { return row[0] < v; });
    if (it != end && (*it)[0] == cp) {
        out.insert(out.end(), kDecompositionData + (*it)[1], kDecompositionData + (*it)[1] + (*it)[2]);
    } else {
        out.push_back(cp);
    }
}

// The primary composite of (a, b), or 0.
uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= kHangulL0 && a < kHangulL0 + kHangulLN && b >= kHangulV0 && b < kHangulV0 + kHangulVN) {
        return kHangulS0 + ((a - kHangulL0) * kHangulVN + (b - kHangulV0)) * kHangulTN;
    }
    if (a >= kHangulS0 && a < kHangulS0 + kHangulSN && (a - kHangulS0) % kHangulTN == 0 &&
        b > kHangulT0 && b < kHangulT0 + kHangulTN) {
        return a + (b - kHangulT0);
    }
    const size_t n = sizeof kComposition / sizeof kComposition[0];
    size_t lo = 0, hi = n;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        const auto& r = kComposition[mid];
        if (r[0] < a || (r[0] == a && r[1] < b)) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && kComposition[lo][0] == a && kComposition[lo][1] == b ? kComposition[lo][2] : 0;
}

}  // namespace

uint8_t flags(uint32_t cp) {
    if (cp >= kMaxCp) return 0;
    const PropTable& t = props();
    return t.blocks[(size_t(t.stage1[cp >> 8]) << 8) | (cp & 0xFF)];
}

const char* version() { return EDGERT_UNICODE_VERSION; }

std::string nfc(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    std::vector<uint32_t> cps;
    cps.reserve(n);
    bool sensitive = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const size_t len = utf8::decode(s + i, n - i, &cp);
        if (len == 0) return std::string(text);  // callers validate first; never rewrite garbage
        if (flags(cp) & kNfcSensitive) sensitive = true;
        cps.push_back(cp);
        i += len;
    }
    if (!sensitive) return std::string(text);

    std::vector<uint32_t> d;
    d.reserve(cps.size() + 8);
    for (uint32_t cp : cps) decompose(cp, d);
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    std::vector<uint8_t> cc(d.size());
    for (size_t i = 0; i < d.size(); ++i) cc[i] = combining_class(d[i]);
    for (size_t i = 0; i < d.size();) {
        if (cc[i] == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < d.size() && cc[j] != 0) ++j;
        for (size_t a = i + 1; a < j; ++a) {  // insertion sort: runs are short
            for (size_t b = a; b > i && cc[b - 1] > cc[b]; --b) {
                std::swap(cc[b - 1], cc[b]);
                std::swap(d[b - 1], d[b]);
            }
        }
        i = j;
    }
    // Canonical composition.
    if (!d.empty()) {
        size_t starter = 0, out = 1;
        uint32_t starter_cp = d[0];
        int last_class = cc[0] == 0 ? 0 : 256;
        for (size_t i = 1; i < d.size(); ++i) {
            const uint32_t ch = d[i];
            const int ch_class = cc[i];
            const uint32_t composite = compose(starter_cp, ch);
            if (composite != 0 && (last_class < ch_class || last_class == 0)) {
                d[starter] = composite;
                starter_cp = composite;
            } else {
                if (ch_class == 0) {
                    starter = out;
                    starter_cp = ch;
                }
                last_class = ch_class;
                d[out++] = ch;
            }
        }
        d.resize(out);
    }
    std::string result;
    result.reserve(n);
    for (uint32_t cp : d) utf8::append(result, cp);
    return result;
}

}  // namespace edgert::unicode
