// pre_tokenizer.cpp — see pre_tokenizer.h. The matchers work on a decoded copy of the text (code
// point, class, byte offset), so each alternative is a few comparisons; the comments next to
// each branch name the regex alternative it implements.
#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/unicode_props.h"
#include "core/utf8.h"

namespace edgert {
namespace {

enum Class : uint8_t { kOther = 0, kL = 1, kN = 2, kS = 3 };

struct Decoded {
    std::vector<uint32_t> cp;
    std::vector<uint8_t> cls;
    std::vector<uint32_t> off;  // byte offset of each code point, plus the end
};

void decode_text(std::string_view text, Decoded& d) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    d.cp.clear();
    d.cls.clear();
    d.off.clear();
    for (size_t i = 0; i < n;) {
        uint32_t cp = s[i];
        size_t len = 1;
        if (cp >= 0x80) {
            len = utf8::decode(s + i, n - i, &cp);
            if (len == 0) {  // callers validate; treat a stray byte as "other" and move on
                len = 1;
                cp = 0xFFFD;
            }
        }
        const uint8_t f = unicode::flags(cp);
        d.cp.push_back(cp);
        d.cls.push_back((f & unicode::kLetter) ? kL : (f & unicode::kNumber) ? kN
                        : (f & unicode::kWhiteSpace) ? kS : kOther);
        d.off.push_back(uint32_t(i));
        i += len;
    }
    d.off.push_back(uint32_t(n));
}

// Simple case folding restricted to what the contraction letters s t r e v m l d can match:
// ASCII upper case, and U+017F LATIN SMALL LETTER LONG S, which folds to 's'.
uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
}

// Length (2 or 3) of a contraction 's 't 're 've 'm 'll 'd at i, or 0.
size_t contraction(const Decoded& d, size_t i, bool ignore_case) {
    const size_t n = d.cp.size();
    if (d.cp[i] != '\'' || i + 1 >= n) return 0;
    const uint32_t a = ignore_case ? fold(d.cp[i + 1]) : d.cp[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    const uint32_t b = ignore_case ? fold(d.cp[i + 2]) : d.cp[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// \s+(?!\S) then \s+, at a white-space code point i.
size_t whitespace_run(const Decoded& d, size_t i) {
    const size_t n = d.cp.size();
    size_t j = i;
    while (j < n && d.cls[j] == kS) ++j;
    if (j == n) return n;        // \s+ to the end: the look-ahead holds
    if (j - i >= 2) return j - 1;  // backtrack one so the next character is white space
    return j;                    // a single space before \S: the plain \s+
}

size_t match_gpt2(const Decoded& d, size_t i) {
    const size_t n = d.cp.size();
    if (size_t len = contraction(d, i, false)) return i + len;
    const size_t k = i + (d.cp[i] == ' ' ? 1 : 0);  // the optional leading space
    if (k < n && d.cls[k] != kS) {                // ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+'
        const uint8_t c = d.cls[k];
        size_t j = k + 1;
        while (j < n && d.cls[j] == c) ++j;
        return j;
    }
    return whitespace_run(d, i);
}

bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

size_t match_llama3(const Decoded& d, size_t i, size_t max_digits) {
    const size_t n = d.cp.size();
    if (size_t len = contraction(d, i, true)) return i + len;
    const uint8_t c = d.cls[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == kL || (c != kN && !is_crlf(d.cp[i]) && i + 1 < n && d.cls[i + 1] == kL)) {
        size_t j = i + 1;
        while (j < n && d.cls[j] == kL) ++j;
        return j;
    }
    if (c == kN) {  // \p{N}{1,max}
        size_t j = i + 1;
        while (j < n && j - i < max_digits && d.cls[j] == kN) ++j;
        return j;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const size_t k = i + (d.cp[i] == ' ' ? 1 : 0);
    if (k < n && d.cls[k] == kOther) {
        size_t j = k + 1;
        while (j < n && d.cls[j] == kOther) ++j;
        while (j < n && is_crlf(d.cp[j])) ++j;
        return j;
    }
    // \s*[\r\n]+ : up to and including the last line break of the white-space run
    size_t j = i, last_break = SIZE_MAX;
    while (j < n && d.cls[j] == kS) {
        if (is_crlf(d.cp[j])) last_break = j;
        ++j;
    }
    if (last_break != SIZE_MAX) return last_break + 1;
    return whitespace_run(d, i);
}

}  // namespace

bool split_pattern_from_regex(std::string_view regex, SplitPattern* out) {
    static constexpr std::string_view kGpt2 =
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    static constexpr std::string_view kLlama3 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    static constexpr std::string_view kQwen2 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    if (regex == kGpt2) *out = SplitPattern::kGpt2;
    else if (regex == kLlama3) *out = SplitPattern::kLlama3;
    else if (regex == kQwen2) *out = SplitPattern::kQwen2;
    else return false;
    return true;
}

void split_by_pattern(SplitPattern pattern, std::string_view text, std::vector<ByteRange>& out) {
    thread_local Decoded d;
    decode_text(text, d);
    const size_t n = d.cp.size();
    for (size_t i = 0; i < n;) {
        size_t j;
        switch (pattern) {
            case SplitPattern::kGpt2: j = match_gpt2(d, i); break;
            case SplitPattern::kLlama3: j = match_llama3(d, i, 3); break;
            default: j = match_llama3(d, i, 1); break;
        }
        out.emplace_back(d.off[i], d.off[j]);
        i = j;
    }
    if (d.cp.capacity() > (size_t(1) << 16)) d = Decoded();  // do not pin a huge text's scratch
}

void split_digits(std::string_view text, bool individual, std::vector<ByteRange>& out) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t start = 0;       // start of the pending non-digit (or digit-run) piece
    bool in_digits = false;
    for (size_t i = 0; i < n;) {
        uint32_t cp = s[i];
        size_t len = 1;
        if (cp >= 0x80) {
            len = utf8::decode(s + i, n - i, &cp);
            if (len == 0) len = 1, cp = 0xFFFD;
        }
        const bool digit = (unicode::flags(cp) & unicode::kNumber) != 0;
        if (digit) {
            if (individual) {
                if (start < i) out.emplace_back(uint32_t(start), uint32_t(i));
                out.emplace_back(uint32_t(i), uint32_t(i + len));
                start = i + len;
            } else if (!in_digits) {
                if (start < i) out.emplace_back(uint32_t(start), uint32_t(i));
                start = i;
            }
        } else if (in_digits && !individual) {
            out.emplace_back(uint32_t(start), uint32_t(i));
            start = i;
        }
        in_digits = digit;
        i += len;
    }
    if (start < n) out.emplace_back(uint32_t(start), uint32_t(n));
}

}  // namespace edgert
