// tokenizer.cpp — tokenizer.json -> Tokenizer, and the encode/decode pipelines of tokenizer.h.
//
// The pipeline is `tokenizers`' own, step for step, because equality with it is the contract:
//   1. added tokens are cut out of the raw text (those with normalized: false);
//   2. every remaining segment is normalized on its own (so Prepend applies after a special
//      token too), then added tokens with normalized: true are cut out of it;
//   3. pre-tokenizers split each segment into words, in sequence; a word remembers whether it
//      starts the whole input (Metaspace's prepend_scheme "first");
//   4. the BPE model turns each word into ids.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "core/json.h"
#include "core/status_error.h"
#include "tokenizer/unicode_props.h"
#include "core/utf8.h"

namespace edgert {
namespace {

[[noreturn]] void unsupported(const std::string& what) {
    fail(EDGERT_ERR_UNSUPPORTED, "tokenizer.json: " + what + " is not supported by the native "
                                 "tokenizer (supported: byte-level BPE and SentencePiece-style BPE "
                                 "as GPT-2, Llama 2/3, Mistral, Qwen2, SmolLM files use them)");
}

[[noreturn]] void malformed(const std::string& what) {
    fail(EDGERT_ERR_FORMAT, "tokenizer.json: " + what + "; re-convert the model with `edgert convert`");
}

const std::string& str_member(const JsonValue& obj, const char* key, const char* where) {
    const JsonValue* v = obj.find(key);
    if (!v || !v->is_string()) malformed(std::string(where) + " needs a string '" + key + "'");
    return v->as_string();
}

bool bool_member(const JsonValue& obj, const char* key, bool dflt) {
    const JsonValue* v = obj.find(key);
    if (!v || v->is_null()) return dflt;
    if (!v->is_bool()) malformed(std::string("'") + key + "' must be true or false");
    return v->as_bool();
}

const std::string& type_of(const JsonValue& obj, const char* where) {
    if (!obj.is_object()) malformed(std::string(where) + " must be an object");
    return str_member(obj, "type", where);
}

// Replace's pattern: {"String": "..."} only (a Regex pattern would need a regex engine).
std::string replace_pattern(const JsonValue& step, const char* where) {
    const JsonValue* p = step.find("pattern");
    if (!p || !p->is_object()) malformed(std::string(where) + " Replace needs a 'pattern'");
    if (const JsonValue* s = p->find("String"); s && s->is_string()) {
        if (s->as_string().empty()) malformed(std::string(where) + " Replace with an empty pattern");
        return s->as_string();
    }
    unsupported(std::string(where) + " Replace with a regex pattern");
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (s.find(from) == std::string::npos) return;
    std::string out;
    out.reserve(s.size() + 8);
    size_t i = 0;
    for (size_t j; (j = s.find(from, i)) != std::string::npos; i = j + from.size()) {
        out.append(s, i, j - i);
        out += to;
    }
    out.append(s, i, std::string::npos);
    s.swap(out);
}

// GPT-2's byte -> printable character map (`bytes_to_unicode`).
std::vector<std::string> byte_alphabet() {
    std::vector<std::string> out(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        utf8::append(out[size_t(b)], keep ? uint32_t(b) : uint32_t(256 + extra++));
    }
    return out;
}

}  // namespace

struct NormStep {
    enum Kind { kPrepend, kReplace, kNfc } kind;
    std::string a, b;
};

struct PreStep {
    enum Kind { kByteLevel, kSplit, kDigits, kMetaspace } kind;
    bool add_prefix_space = false;  // ByteLevel
    bool use_regex = true;          // ByteLevel
    SplitPattern pattern = SplitPattern::kGpt2;
    bool individual = false;        // Digits
    std::string replacement;        // Metaspace
    enum Scheme { kAlways, kFirst, kNever } scheme = kAlways;
    bool split = true;              // Metaspace
};

struct DecStep {
    enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
    std::string a, b;             // Replace from/to; Strip content; Metaspace replacement
    size_t start = 0, stop = 0;   // Strip
    bool first_strip = true;      // Metaspace: prepend_scheme != never
};

struct AddedToken {
    int32_t id;
    std::string content;  // as written in tokenizer.json (what decode gives)
    std::string pattern;  // as matched: the normalized content for normalized tokens
    bool special, lstrip, rstrip, single_word, normalized;
};

// Byte trie over added-token contents; leftmost-longest search as aho-corasick's LeftmostLongest.
struct TokenTrie {
    std::vector<std::unordered_map<unsigned char, int32_t>> next{1};
    std::vector<int32_t> token{-1};  // index into added tokens of a content ending here
    bool first_byte[256] = {};

    void insert(const std::string& s, int32_t index) {
        int32_t node = 0;
        for (unsigned char c : s) {
            auto it = next[size_t(node)].find(c);
            if (it == next[size_t(node)].end()) {
                next.emplace_back();
                token.push_back(-1);
                it = next[size_t(node)].emplace(c, int32_t(next.size() - 1)).first;
            }
            node = it->second;
        }
        token[size_t(node)] = index;
        first_byte[static_cast<unsigned char>(s[0])] = true;
    }
    bool empty() const { return next.size() == 1; }
    // Longest content starting at pos: returns its token index and sets *end, or -1.
    int32_t longest_at(std::string_view s, size_t pos, size_t* end) const {
        int32_t node = 0, best = -1;
        for (size_t i = pos; i < s.size(); ++i) {
            auto it = next[size_t(node)].find(static_cast<unsigned char>(s[i]));
            if (it == next[size_t(node)].end()) break;
            node = it->second;
            if (token[size_t(node)] >= 0) {
                best = token[size_t(node)];
                *end = i + 1;
            }
        }
        return best;
    }
};

struct Tokenizer::Impl {
    std::vector<NormStep> normalizer;
    std::vector<PreStep> pre;
    std::vector<DecStep> decoder;
    bool has_decoder = false;
    bool byte_level_last = false;  // the last pre-tokenizer is ByteLevel: words are raw bytes
    std::unique_ptr<BpeModel> model;
    std::vector<AddedToken> added;
    std::unordered_map<int32_t, size_t> added_by_id;
    TokenTrie raw_trie, norm_trie;
    std::vector<std::string> byte_chars;
    std::unordered_map<std::string, unsigned char> char_to_byte;

    struct Segment {
        std::string text;
        int32_t token = -1;  // an added token's index, or -1 for text
        bool at_origin = false;
    };

    void normalize(std::string& s) const {
        for (const NormStep& n : normalizer) {
            switch (n.kind) {
                case NormStep::kPrepend: if (!s.empty()) s.insert(0, n.a); break;
                case NormStep::kReplace: replace_all(s, n.a, n.b); break;
                case NormStep::kNfc: s = unicode::nfc(s); break;
            }
        }
    }

    // `tokenizers`' AddedVocabulary::find_matches over one string.
    void cut_added(const TokenTrie& trie, const std::string& s, bool at_origin, bool parse_special,
                   std::vector<Segment>& out) const {
        size_t start_offset = 0;
        const auto emit_text = [&](size_t a, size_t b) {
            if (a < b) out.push_back({s.substr(a, b - a), -1, at_origin && a == 0});
        };
        if (!trie.empty()) {
            for (size_t pos = 0; pos < s.size();) {
                size_t end = 0;
                const int32_t t = trie.first_byte[static_cast<unsigned char>(s[pos])]
                                      ? trie.longest_at(s, pos, &end) : -1;
                if (t < 0) {
                    ++pos;
                    continue;
                }
                const AddedToken& tok = added[size_t(t)];
                size_t start = pos, stop = end;
                pos = end;
                if (tok.special && !parse_special) continue;
                if (tok.single_word) {
                    const auto word_char = [](uint32_t c) {
                        return c == '_' || (unicode::flags(c) & (unicode::kLetter | unicode::kNumber));
                    };
                    bool left_ok = true, right_ok = true;
                    if (start > 0) {
                        size_t k = start - 1;
                        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
                        uint32_t c;
                        if (utf8::decode(reinterpret_cast<const unsigned char*>(s.data()) + k, start - k, &c)) {
                            left_ok = !word_char(c);
                        }
                    }
                    if (stop < s.size()) {
                        uint32_t c;
                        if (utf8::decode(reinterpret_cast<const unsigned char*>(s.data()) + stop, s.size() - stop, &c)) {
                            right_ok = !word_char(c);
                        }
                    }
                    if (!left_ok || !right_ok) continue;
                }
                if (tok.lstrip) {
                    size_t k = start;
                    while (k > start_offset) {
                        size_t b = k - 1;
                        while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
                        uint32_t c;
                        if (!utf8::decode(reinterpret_cast<const unsigned char*>(s.data()) + b, k - b, &c) ||
                            !(unicode::flags(c) & unicode::kWhiteSpace)) break;
                        k = b;
                    }
                    start = k;
                }
                if (tok.rstrip) {
                    while (stop < s.size()) {
                        uint32_t c;
                        const size_t len = utf8::decode(reinterpret_cast<const unsigned char*>(s.data()) + stop,
                                                        s.size() - stop, &c);
                        if (!len || !(unicode::flags(c) & unicode::kWhiteSpace)) break;
                        stop += len;
                    }
                }
                emit_text(start_offset, start);
                out.push_back({std::string(), t, false});
                start_offset = stop;
                if (pos < stop) pos = stop;
            }
        }
        emit_text(start_offset, s.size());
    }

    struct Word {
        std::string text;
        bool at_origin;
    };

    void pre_tokenize(std::string text, bool at_origin, std::vector<Word>& words) const {
        thread_local std::vector<ByteRange> ranges;
        std::vector<Word> cur, next_words;
        cur.push_back({std::move(text), at_origin});
        for (const PreStep& p : pre) {
            next_words.clear();
            for (Word& w : cur) {
                ranges.clear();
                switch (p.kind) {
                    case PreStep::kByteLevel:
                        if (p.add_prefix_space && (w.text.empty() || w.text[0] != ' ')) w.text.insert(0, " ");
                        if (p.use_regex) split_by_pattern(SplitPattern::kGpt2, w.text, ranges);
                        else ranges.emplace_back(0, uint32_t(w.text.size()));
                        break;
                    case PreStep::kSplit: split_by_pattern(p.pattern, w.text, ranges); break;
                    case PreStep::kDigits: split_digits(w.text, p.individual, ranges); break;
                    case PreStep::kMetaspace: {
                        replace_all(w.text, " ", p.replacement);
                        const bool starts = w.text.compare(0, p.replacement.size(), p.replacement) == 0;
                        if (!starts && (p.scheme == PreStep::kAlways ||
                                        (p.scheme == PreStep::kFirst && w.at_origin))) {
                            w.text.insert(0, p.replacement);
                        }
                        if (!p.split) {
                            ranges.emplace_back(0, uint32_t(w.text.size()));
                            break;
                        }
                        size_t begin = 0;  // MergedWithNext: each replacement starts a piece
                        for (size_t j = w.text.find(p.replacement, 1); j != std::string::npos;
                             j = w.text.find(p.replacement, j + p.replacement.size())) {
                            if (j > begin) ranges.emplace_back(uint32_t(begin), uint32_t(j));
                            begin = j;
                        }
                        ranges.emplace_back(uint32_t(begin), uint32_t(w.text.size()));
                        break;
                    }
                }
                for (const ByteRange& r : ranges) {
                    if (r.second > r.first) {
                        next_words.push_back({w.text.substr(r.first, r.second - r.first),
                                              w.at_origin && r.first == 0});
                    }
                }
            }
            cur.swap(next_words);
        }
        for (Word& w : cur) {
            if (!w.text.empty()) words.push_back(std::move(w));
        }
    }

    // Decoder chain of `tokenizers` (decode_chain of each step in turn). raw: one token's bytes
    // mid-text (byte tokens stay bytes, no strips, no lossy UTF-8 conversion).
    std::string run_decoder(std::vector<std::string> tokens, bool raw) const {
        if (!has_decoder) {
            std::string out;
            for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
            return out;
        }
        for (const DecStep& d : decoder) {
            switch (d.kind) {
                case DecStep::kByteLevel: {
                    std::string bytes;
                    for (const std::string& t : tokens) {
                        std::string mapped;
                        bool all = true;
                        const auto* s = reinterpret_cast<const unsigned char*>(t.data());
                        for (size_t i = 0; i < t.size() && all;) {
                            uint32_t cp;
                            size_t len = utf8::decode(s + i, t.size() - i, &cp);
                            if (!len) {
                                all = false;
                                break;
                            }
                            auto it = char_to_byte.find(t.substr(i, len));
                            if (it == char_to_byte.end()) all = false;
                            else mapped += char(it->second);
                            i += len;
                        }
                        bytes += all ? mapped : t;
                    }
                    tokens.assign(1, std::string());
                    if (raw) tokens[0] = bytes;
                    else utf8::append_lossy(tokens[0], reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
                    break;
                }
                case DecStep::kReplace:
                    for (std::string& t : tokens) replace_all(t, d.a, d.b);
                    break;
                case DecStep::kByteFallback: {
                    std::vector<std::string> out;
                    std::string pending;
                    size_t n_pending = 0;
                    const auto flush = [&] {
                        if (!n_pending) return;
                        if (raw || utf8::first_invalid(reinterpret_cast<const unsigned char*>(pending.data()),
                                                       pending.size()) == pending.size()) {
                            out.push_back(pending);
                        } else {
                            for (size_t i = 0; i < n_pending; ++i) out.push_back("\xEF\xBF\xBD");
                        }
                        pending.clear();
                        n_pending = 0;
                    };
                    for (std::string& t : tokens) {
                        int byte = -1;
                        if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') byte = parse_hex_byte(t[3], t[4]);
                        if (byte >= 0) {
                            pending += char(byte);
                            ++n_pending;
                        } else {
                            flush();
                            out.push_back(std::move(t));
                        }
                    }
                    flush();
                    tokens.swap(out);
                    break;
                }
                case DecStep::kFuse: {
                    std::string all;
                    for (const std::string& t : tokens) all += t;
                    tokens.assign(1, all);
                    break;
                }
                case DecStep::kStrip:
                    if (raw) break;
                    for (std::string& t : tokens) strip_chars(t, d.a, d.start, d.stop);
                    break;
                case DecStep::kMetaspace:
                    for (size_t i = 0; i < tokens.size(); ++i) {
                        replace_all(tokens[i], d.a, (i == 0 && d.first_strip && !raw) ? "" : " ");
                    }
                    break;
            }
        }
        std::string out;
        for (const std::string& t : tokens) out += t;
        return out;
    }

    // Rust's u8::from_str_radix(s, 16) on two characters (it accepts a leading '+').
    static int parse_hex_byte(char a, char b) {
        const auto hex = [](char c) {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        if (a == '+') return hex(b);
        const int hi = hex(a), lo = hex(b);
        return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
    }

    // Strip decoder: up to `start` leading and `stop` trailing copies of the character `c`.
    static void strip_chars(std::string& t, const std::string& c, size_t start, size_t stop) {
        size_t b = 0, e = t.size();
        for (size_t i = 0; i < start && t.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++i) b += c.size();
        for (size_t i = 0; i < stop && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0; ++i) e -= c.size();
        t = t.substr(b, e - b);
    }

    void parse_normalizer(const JsonValue& n) {
        const std::string& type = type_of(n, "normalizer");
        if (type == "Sequence") {
            const JsonValue* steps = n.find("normalizers");
            if (!steps || !steps->is_array()) malformed("normalizer Sequence needs 'normalizers'");
            for (const JsonValue& s : steps->items()) parse_normalizer(s);
        } else if (type == "Prepend") {
            normalizer.push_back({NormStep::kPrepend, str_member(n, "prepend", "Prepend"), ""});
        } else if (type == "Replace") {
            normalizer.push_back({NormStep::kReplace, replace_pattern(n, "normalizer"),
                                  str_member(n, "content", "Replace")});
        } else if (type == "NFC") {
            normalizer.push_back({NormStep::kNfc, "", ""});
        } else {
            unsupported("normalizer '" + type + "'");
        }
    }

    void parse_pre_tokenizer(const JsonValue& p) {
        const std::string& type = type_of(p, "pre_tokenizer");
        if (byte_level_last) unsupported("a pre-tokenizer after ByteLevel");
        PreStep step;
        if (type == "Sequence") {
            const JsonValue* steps = p.find("pretokenizers");
            if (!steps || !steps->is_array()) malformed("pre_tokenizer Sequence needs 'pretokenizers'");
            for (const JsonValue& s : steps->items()) parse_pre_tokenizer(s);
            return;
        } else if (type == "ByteLevel") {
            step.kind = PreStep::kByteLevel;
            step.add_prefix_space = bool_member(p, "add_prefix_space", true);
            step.use_regex = bool_member(p, "use_regex", true);
            byte_level_last = true;
        } else if (type == "Split") {
            step.kind = PreStep::kSplit;
            const JsonValue* pat = p.find("pattern");
            const JsonValue* re = pat && pat->is_object() ? pat->find("Regex") : nullptr;
            if (!re || !re->is_string() || !split_pattern_from_regex(re->as_string(), &step.pattern)) {
                unsupported("Split pre-tokenizer pattern (known: the GPT-2, Llama 3 and Qwen2 regexes)");
            }
            const JsonValue* beh = p.find("behavior");
            if (!beh || !beh->is_string() || beh->as_string() != "Isolated" || bool_member(p, "invert", false)) {
                unsupported("Split pre-tokenizer behavior other than Isolated");
            }
        } else if (type == "Digits") {
            step.kind = PreStep::kDigits;
            step.individual = bool_member(p, "individual_digits", false);
        } else if (type == "Metaspace") {
            step.kind = PreStep::kMetaspace;
            step.replacement = str_member(p, "replacement", "Metaspace");
            step.split = bool_member(p, "split", true);
            step.scheme = metaspace_scheme(p);
        } else {
            unsupported("pre-tokenizer '" + type + "'");
        }
        pre.push_back(std::move(step));
    }

    static PreStep::Scheme metaspace_scheme(const JsonValue& p) {
        if (const JsonValue* s = p.find("prepend_scheme"); s && s->is_string()) {
            if (s->as_string() == "always") return PreStep::kAlways;
            if (s->as_string() == "first") return PreStep::kFirst;
            if (s->as_string() == "never") return PreStep::kNever;
            malformed("Metaspace prepend_scheme '" + s->as_string() + "'");
        }
        // older files: add_prefix_space true means "always"
        return bool_member(p, "add_prefix_space", true) ? PreStep::kAlways : PreStep::kNever;
    }

    void parse_decoder(const JsonValue& d) {
        const std::string& type = type_of(d, "decoder");
        DecStep step;
        if (type == "Sequence") {
            const JsonValue* steps = d.find("decoders");
            if (!steps || !steps->is_array()) malformed("decoder Sequence needs 'decoders'");
            for (const JsonValue& s : steps->items()) parse_decoder(s);
            return;
        } else if (type == "ByteLevel") {
            step.kind = DecStep::kByteLevel;
        } else if (type == "Replace") {
            step.kind = DecStep::kReplace;
            step.a = replace_pattern(d, "decoder");
            step.b = str_member(d, "content", "Replace");
        } else if (type == "ByteFallback") {
            step.kind = DecStep::kByteFallback;
        } else if (type == "Fuse") {
            step.kind = DecStep::kFuse;
        } else if (type == "Strip") {
            step.kind = DecStep::kStrip;
            step.a = str_member(d, "content", "Strip");
            const JsonValue* a = d.find("start");
            const JsonValue* b = d.find("stop");
            if (!a || !b || !a->is_integer() || !b->is_integer() || a->as_integer() < 0 || b->as_integer() < 0 ||
                a->as_integer() > 1024 || b->as_integer() > 1024) {
                malformed("Strip decoder needs small non-negative 'start' and 'stop'");
            }
            step.start = size_t(a->as_integer());
            step.stop = size_t(b->as_integer());
        } else if (type == "Metaspace") {
            step.kind = DecStep::kMetaspace;
            step.a = str_member(d, "replacement", "Metaspace");
            step.first_strip = metaspace_scheme(d) != PreStep::kNever;
        } else {
            unsupported("decoder '" + type + "'");
        }
        decoder.push_back(std::move(step));
    }
};

Tokenizer::Tokenizer(std::string_view tokenizer_json, TokenizerConfig config)
    : impl_(std::make_unique<Impl>()), config_(std::move(config)) {
    JsonValue root;
    try {
        // Vocabulary (1 value per token) + merges (up to 3 per merge, one merge per token at
        // most) + added tokens and the pipeline's objects, with room to spare.
        const size_t max_values = kJsonMaxValues + 8 * size_t(std::max<int32_t>(config_.vocab_size, 0));
        root = parse_json(tokenizer_json.data(), tokenizer_json.size(), 64, max_values);
    } catch (const JsonError& e) {
        malformed(std::string("malformed JSON: ") + e.what());
    }
    if (!root.is_object()) malformed("the document must be a JSON object");
    Impl& m = *impl_;

    const JsonValue* model = root.find("model");
    if (!model || !model->is_object()) malformed("no 'model' object");
    const JsonValue* mtype = model->find("type");
    if (mtype && !(mtype->is_string() && mtype->as_string() == "BPE")) {
        unsupported("model type '" + (mtype->is_string() ? mtype->as_string() : std::string("?")) + "'");
    }
    if (!mtype && !model->find("merges")) unsupported("a model without 'type' or 'merges'");
    m.model = std::make_unique<BpeModel>(*model);

    if (const JsonValue* n = root.find("normalizer"); n && !n->is_null()) m.parse_normalizer(*n);
    if (const JsonValue* p = root.find("pre_tokenizer"); p && !p->is_null()) m.parse_pre_tokenizer(*p);
    if (const JsonValue* d = root.find("decoder"); d && !d->is_null()) {
        m.parse_decoder(*d);
        m.has_decoder = true;
    }
    if (m.byte_level_last) {
        m.byte_chars = byte_alphabet();
        for (int b = 0; b < 256; ++b) m.char_to_byte[m.byte_chars[size_t(b)]] = static_cast<unsigned char>(b);
        m.model->set_byte_alphabet(m.byte_chars);
    } else {
        for (const DecStep& d : m.decoder) {
            if (d.kind == DecStep::kByteLevel) {
                m.byte_chars = byte_alphabet();
                for (int b = 0; b < 256; ++b) m.char_to_byte[m.byte_chars[size_t(b)]] = static_cast<unsigned char>(b);
            }
        }
    }

    if (const JsonValue* added = root.find("added_tokens"); added && !added->is_null()) {
        if (!added->is_array()) malformed("'added_tokens' must be an array");
        for (const JsonValue& a : added->items()) {
            if (!a.is_object()) malformed("each added token must be an object");
            const JsonValue* id = a.find("id");
            if (!id || !id->is_integer() || id->as_integer() < 0 || id->as_integer() >= (int64_t(1) << 24)) {
                malformed("an added token needs an integer 'id' in [0, 2^24)");
            }
            const std::string& content = str_member(a, "content", "an added token");
            AddedToken t{int32_t(id->as_integer()), content, content,
                         bool_member(a, "special", false), bool_member(a, "lstrip", false),
                         bool_member(a, "rstrip", false), bool_member(a, "single_word", false),
                         bool_member(a, "normalized", false)};
            if (t.normalized) m.normalize(t.pattern);
            if (t.pattern.empty()) continue;
            m.added_by_id[t.id] = m.added.size();
            m.added.push_back(t);
        }
        // Insert in list order: a later duplicate content wins its trie slot, as a later entry
        // overrides an earlier one in tokenizers' added vocabulary.
        for (size_t i = 0; i < m.added.size(); ++i) {
            (m.added[i].normalized ? m.norm_trie : m.raw_trie).insert(m.added[i].pattern, int32_t(i));
        }
    }
}

Tokenizer::~Tokenizer() = default;

int32_t Tokenizer::n_tokens() const {
    int32_t n = impl_->model->size();
    for (const AddedToken& t : impl_->added) n = std::max(n, t.id + 1);
    return n;
}

bool Tokenizer::is_special(int32_t id) const {
    auto it = impl_->added_by_id.find(id);
    return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
    for (const AddedToken& t : impl_->added) {
        if (t.content == token) return t.id;
    }
    return impl_->model->token_to_id(token);
}

std::string Tokenizer::token_text(int32_t id) const {
    auto it = impl_->added_by_id.find(id);
    if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
    std::string t;
    impl_->model->id_to_token(id, &t);
    return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const size_t bad = utf8::first_invalid(reinterpret_cast<const unsigned char*>(text.data()), text.size());
    if (bad != text.size()) {
        fail(EDGERT_ERR_INVALID_TEXT, "the text is not valid UTF-8 (byte " + std::to_string(bad) +
                                          "); pass UTF-8, or replace invalid bytes with U+FFFD first");
    }
    const Impl& m = *impl_;
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    if (add_special && config_.add_bos && config_.bos_id >= 0) ids.push_back(config_.bos_id);

    std::vector<Impl::Segment> raw, segs;
    m.cut_added(m.raw_trie, std::string(text), true, parse_special, raw);
    for (Impl::Segment& s : raw) {
        if (s.token >= 0) {
            segs.push_back(std::move(s));
            continue;
        }
        m.normalize(s.text);
        m.cut_added(m.norm_trie, s.text, s.at_origin, parse_special, segs);
    }
    std::vector<Impl::Word> words;
    // Long texts repeat words: remember each word's ids for this call (as `tokenizers` caches
    // words), so BPE runs once per distinct word.
    const bool use_cache = text.size() >= 2048;
    std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> cache;  // word -> ids span
    std::vector<int32_t> cached_ids;
    for (Impl::Segment& s : segs) {
        if (s.token >= 0) {
            ids.push_back(m.added[size_t(s.token)].id);
            continue;
        }
        words.clear();
        m.pre_tokenize(std::move(s.text), s.at_origin, words);
        for (const Impl::Word& w : words) {
            if (use_cache && w.text.size() <= 64) {
                auto it = cache.find(w.text);
                if (it != cache.end()) {
                    ids.insert(ids.end(), cached_ids.begin() + it->second.first,
                               cached_ids.begin() + it->second.first + it->second.second);
                    continue;
                }
            }
            const size_t before = ids.size();
            if (m.byte_level_last) m.model->encode_byte_level_word(w.text, ids);
            else m.model->encode_word(w.text, ids);
            if (use_cache && w.text.size() <= 64) {
                cache.emplace(w.text, std::make_pair(uint32_t(cached_ids.size()), uint32_t(ids.size() - before)));
                cached_ids.insert(cached_ids.end(), ids.begin() + std::ptrdiff_t(before), ids.end());
            }
        }
    }
    if (add_special && config_.add_eos && !config_.eos_ids.empty()) ids.push_back(config_.eos_ids[0]);
    return ids;
}

std::string Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special) const {
    const Impl& m = *impl_;
    std::vector<std::string> tokens;
    tokens.reserve(n);
    std::string t;
    for (size_t i = 0; i < n; ++i) {
        auto it = m.added_by_id.find(ids[i]);
        if (it != m.added_by_id.end()) {
            const AddedToken& a = m.added[it->second];
            if (skip_special && a.special) continue;
            tokens.push_back(a.content);
            continue;
        }
        if (m.model->id_to_token(ids[i], &t)) tokens.push_back(t);
    }
    return m.run_decoder(std::move(tokens), false);
}

std::string Tokenizer::piece(int32_t id) const {
    const Impl& m = *impl_;
    std::string t;
    auto it = m.added_by_id.find(id);
    if (it != m.added_by_id.end()) t = m.added[it->second].content;
    else if (!m.model->id_to_token(id, &t)) return std::string();
    return m.run_decoder({t}, true);
}

DecodeStream::DecodeStream(const Tokenizer& tok, const int32_t* context, size_t n_context,
                           bool skip_special)
    : tok_(tok), skip_special_(skip_special) {
    constexpr size_t kContextTokens = 8;  // edgert/tokenizer.py's _STREAM_CONTEXT_TOKENS
    const size_t from = n_context > kContextTokens ? n_context - kContextTokens : 0;
    if (context) ids_.assign(context + from, context + n_context);
}

std::string DecodeStream::step(int32_t id) {
    static const std::string kReplacement = "\xEF\xBF\xBD";
    const auto ends_with_fffd = [](const std::string& s) {
        return s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0;
    };
    if (prefix_.empty() && !ids_.empty()) {
        std::string p = tok_.decode(ids_.data(), ids_.size(), skip_special_);
        if (!ends_with_fffd(p)) {
            prefix_ = std::move(p);
            prefix_index_ = ids_.size();
        }
    }
    ids_.push_back(id);
    fed_ = true;
    std::string s = tok_.decode(ids_.data(), ids_.size(), skip_special_);
    if (s.size() <= prefix_.size() || ends_with_fffd(s)) return std::string();
    std::string out;
    if (s.compare(0, prefix_.size(), prefix_) == 0) {
        out = s.substr(prefix_.size());
    } else {  // the window's text changed before the new token (not seen with the supported
              // decoders): emit the whole window's text rather than lose it
        out = s;
    }
    const size_t new_index = ids_.size() - prefix_index_;
    ids_.erase(ids_.begin(), ids_.begin() + std::ptrdiff_t(prefix_index_));
    prefix_ = tok_.decode(ids_.data(), ids_.size(), skip_special_);
    prefix_index_ = new_index;
    return out;
}

std::string DecodeStream::flush() {
    if (!fed_) return std::string();  // nothing fed since the start: the context is not ours
    fed_ = false;
    std::string s = tok_.decode(ids_.data(), ids_.size(), skip_special_);
    std::string out;
    if (s.size() > prefix_.size() && s.compare(0, prefix_.size(), prefix_) == 0) out = s.substr(prefix_.size());
    ids_.clear();
    prefix_.clear();
    prefix_index_ = 0;
    return out;
}

}  // namespace edgert
