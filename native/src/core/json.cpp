// json.cpp — recursive-descent parser behind json.h.
#include "core/json.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/message_text.h"
#include "core/utf8.h"

namespace edgert {

const JsonValue* JsonValue::find(const std::string& key) const {
    if (type_ != Type::Object) return nullptr;
    for (const auto& m : members_) {
        if (m.first == key) return &m.second;
    }
    return nullptr;
}

class JsonParser {
public:
    JsonParser(const char* text, size_t size, int max_depth, size_t max_values)
        : p_(text), begin_(text), end_(text + size), max_depth_(max_depth), max_values_(max_values) {}

    JsonValue parse_document() {
        JsonValue v;
        skip_ws();
        parse_value(v, 0);
        skip_ws();
        if (p_ != end_) error("unexpected data after the JSON value");
        return v;
    }

private:
    [[noreturn]] void error(const char* what) const { throw JsonError(what, size_t(p_ - begin_)); }

    void skip_ws() {
        while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
    }

    void expect_literal(const char* lit) {
        size_t n = std::strlen(lit);
        if (size_t(end_ - p_) < n || std::memcmp(p_, lit, n) != 0) error("invalid literal");
        p_ += n;
    }

    void parse_value(JsonValue& v, int depth) {
        if (p_ == end_) error("unexpected end of JSON");
        if (++n_values_ > max_values_) error("too many JSON values (the limit bounds the memory a document can take)");
        switch (*p_) {
            case '{': parse_object(v, depth + 1); return;
            case '[': parse_array(v, depth + 1); return;
            case '"': v.type_ = JsonValue::Type::String; parse_string(v.string_); return;
            case 't': expect_literal("true"); v.type_ = JsonValue::Type::Bool; v.bool_ = true; return;
            case 'f': expect_literal("false"); v.type_ = JsonValue::Type::Bool; return;
            case 'n': expect_literal("null"); v.type_ = JsonValue::Type::Null; return;
            default:
                if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) { parse_number(v); return; }
                error("unexpected character");
        }
    }

    void parse_object(JsonValue& v, int depth) {
        if (depth > max_depth_) error("JSON nested too deeply");
        v.type_ = JsonValue::Type::Object;
        ++p_;
        skip_ws();
        if (p_ != end_ && *p_ == '}') { ++p_; return; }
        for (;;) {
            skip_ws();
            if (p_ == end_ || *p_ != '"') error("expected a string key");
            std::string key;
            parse_string(key);
            skip_ws();
            if (p_ == end_ || *p_ != ':') error("expected ':'");
            ++p_;
            skip_ws();
            v.members_.emplace_back(std::move(key), JsonValue());
            parse_value(v.members_.back().second, depth);
            skip_ws();
            if (p_ == end_) error("unexpected end of JSON in object");
            if (*p_ == ',') { ++p_; continue; }
            if (*p_ == '}') { ++p_; break; }
            error("expected ',' or '}'");
        }
        // Sorting views keeps the duplicate check O(n log n) for wide objects.
        std::vector<std::string_view> keys;
        keys.reserve(v.members_.size());
        for (const auto& m : v.members_) keys.emplace_back(m.first);
        std::sort(keys.begin(), keys.end());
        if (std::adjacent_find(keys.begin(), keys.end()) != keys.end()) {
            error("duplicate key in object");
        }
    }

    void parse_array(JsonValue& v, int depth) {
        if (depth > max_depth_) error("JSON nested too deeply");
        v.type_ = JsonValue::Type::Array;
        ++p_;
        skip_ws();
        if (p_ != end_ && *p_ == ']') { ++p_; return; }
        for (;;) {
            skip_ws();
            v.items_.emplace_back();
            parse_value(v.items_.back(), depth);
            skip_ws();
            if (p_ == end_) error("unexpected end of JSON in array");
            if (*p_ == ',') { ++p_; continue; }
            if (*p_ == ']') { ++p_; break; }
            error("expected ',' or ']'");
        }
    }

    unsigned parse_hex4() {
        if (end_ - p_ < 4) error("truncated \\u escape");
        unsigned u = 0;
        for (int i = 0; i < 4; ++i) {
            char c = *p_++;
            u <<= 4;
            if (c >= '0' && c <= '9') u |= unsigned(c - '0');
            else if (c >= 'a' && c <= 'f') u |= unsigned(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') u |= unsigned(c - 'A' + 10);
            else error("invalid hex digit in \\u escape");
        }
        return u;
    }

    void parse_string(std::string& out) {
        ++p_;  // opening quote
        for (;;) {
            // Bulk-copy the run of plain ASCII, the common case of a long tokenizer string.
            const char* run = p_;
            while (p_ != end_) {
                unsigned char c = static_cast<unsigned char>(*p_);
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
                ++p_;
            }
            out.append(run, size_t(p_ - run));
            if (p_ == end_) error("unterminated string");
            unsigned char c = static_cast<unsigned char>(*p_);
            if (c == '"') { ++p_; return; }
            if (c < 0x20) error("raw control character in string");
            if (c >= 0x80) {
                size_t n = utf8_sequence_length(reinterpret_cast<const unsigned char*>(p_),
                                                reinterpret_cast<const unsigned char*>(end_));
                if (n == 0) error("invalid UTF-8 in string");
                out.append(p_, n);
                p_ += n;
                continue;
            }
            ++p_;  // backslash
            if (p_ == end_) error("unterminated escape");
            char e = *p_++;
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = parse_hex4();
                    if (cp >= 0xDC00 && cp <= 0xDFFF) error("lone low surrogate in \\u escape");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
                            error("high surrogate not followed by a low surrogate");
                        }
                        p_ += 2;
                        uint32_t lo = parse_hex4();
                        if (lo < 0xDC00 || lo > 0xDFFF) error("invalid low surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    utf8::append(out, cp);
                    break;
                }
                default: error("invalid escape");
            }
        }
    }

    void parse_number(JsonValue& v) {
        const char* start = p_;
        bool integral = true;
        if (*p_ == '-') ++p_;
        if (p_ == end_) error("truncated number");
        if (*p_ == '0') {
            ++p_;
        } else if (*p_ >= '1' && *p_ <= '9') {
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        } else {
            error("invalid number");
        }
        if (p_ != end_ && *p_ == '.') {
            integral = false;
            ++p_;
            if (p_ == end_ || !(*p_ >= '0' && *p_ <= '9')) error("digit expected after '.'");
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
            integral = false;
            ++p_;
            if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
            if (p_ == end_ || !(*p_ >= '0' && *p_ <= '9')) error("digit expected in exponent");
            while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
        }
        // strtod needs a NUL-terminated buffer; numbers are short, the metadata is not.
        std::string text(start, size_t(p_ - start));
        v.type_ = JsonValue::Type::Number;
        v.number_ = std::strtod(text.c_str(), nullptr);
        if (!std::isfinite(v.number_)) error("number out of range");
        if (integral) {
            errno = 0;
            long long i = std::strtoll(text.c_str(), nullptr, 10);
            if (errno != ERANGE) {
                v.is_integer_ = true;
                v.integer_ = int64_t(i);
            }
        }
    }

    const char* p_;
    const char* begin_;
    const char* end_;
    int max_depth_;
    size_t max_values_;
    size_t n_values_ = 0;
};

JsonValue parse_json(const char* text, size_t size, int max_depth, size_t max_values) {
    return JsonParser(text, size, max_depth, max_values).parse_document();
}

}  // namespace edgert
