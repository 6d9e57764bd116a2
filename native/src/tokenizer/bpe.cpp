// bpe.cpp — see bpe.h. merge_symbols mirrors `tokenizers`' Word::merge_all: a min-heap of
// (rank, position) candidates over a doubly linked list of symbols; a popped candidate whose pair
// no longer maps to the same merge is stale and skipped. Equal ranks merge leftmost first.
#include "tokenizer/bpe.h"

#include <queue>

#include "core/json.h"
#include "core/status_error.h"
#include "core/utf8.h"

namespace edgert {
namespace {

constexpr size_t kKeepScratch = size_t(1) << 16;  // per-thread scratch kept between words
constexpr std::string_view kMeta = "\xE2\x96\x81";     // U+2581, SentencePiece's space

[[noreturn]] void bad_model(const std::string& msg) {
    fail(EDGERT_ERR_FORMAT, "tokenizer.json: invalid BPE model: " + msg);
}

bool opt_bool(const JsonValue& obj, const char* key) {
    const JsonValue* v = obj.find(key);
    if (!v || v->is_null()) return false;
    if (!v->is_bool()) bad_model(std::string("'") + key + "' must be true or false");
    return v->as_bool();
}

}  // namespace

BpeModel::BpeModel(const JsonValue& model) {
    for (int i = 0; i < 256; ++i) byte_token_[i] = byte_level_id_[i] = -1;
    if (const JsonValue* d = model.find("dropout"); d && !d->is_null()) {
        fail(EDGERT_ERR_UNSUPPORTED, "tokenizer.json: BPE dropout is not supported (it makes "
                                     "tokenization random); set \"dropout\": null");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        const JsonValue* v = model.find(key);
        if (v && !v->is_null() && !(v->is_string() && v->as_string().empty())) {
            fail(EDGERT_ERR_UNSUPPORTED, std::string("tokenizer.json: BPE '") + key +
                                             "' is not supported by the native tokenizer");
        }
    }
    byte_fallback_ = opt_bool(model, "byte_fallback");
    fuse_unk_ = opt_bool(model, "fuse_unk");
    ignore_merges_ = opt_bool(model, "ignore_merges");

    const JsonValue* vocab = model.find("vocab");
    if (!vocab || !vocab->is_object()) bad_model("'vocab' must be an object");
    int64_t max_id = -1;
    vocab_.reserve(vocab->members().size() * 2);
    for (const auto& [token, id] : vocab->members()) {
        if (!id.is_integer() || id.as_integer() < 0 || id.as_integer() >= (int64_t(1) << 24)) {
            bad_model("the id of '" + token + "' must be an integer in [0, 2^24)");
        }
        vocab_[token] = int32_t(id.as_integer());
        if (id.as_integer() > max_id) max_id = id.as_integer();
    }
    id_to_token_.resize(size_t(max_id + 1));
    has_token_.assign(size_t(max_id + 1), 0);
    for (const auto& [token, id] : vocab_) {
        id_to_token_[size_t(id)] = token;
        has_token_[size_t(id)] = 1;
    }
    for (int b = 0; b < 256; ++b) {
        static const char* hex = "0123456789ABCDEF";
        const std::string name = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
        byte_token_[b] = token_to_id(name);
    }

    if (const JsonValue* unk = model.find("unk_token"); unk && !unk->is_null()) {
        if (!unk->is_string()) bad_model("'unk_token' must be a string or null");
        unk_id_ = token_to_id(unk->as_string());
        if (unk_id_ < 0) bad_model("unk_token '" + unk->as_string() + "' is not in the vocabulary");
    }

    const JsonValue* merge_list = model.find("merges");
    if (!merge_list || !merge_list->is_array()) bad_model("'merges' must be an array");
    std::unordered_map<uint64_t, Merge> merges;
    merges.reserve(merge_list->items().size() * 2);
    uint32_t rank = 0;
    bool joins_at_meta = false;  // some merge joins "...x" + "\u2581..." with x not U+2581
    for (const JsonValue& m : merge_list->items()) {
        std::string a, b;
        if (m.is_string()) {  // "a b" (tokenizers < 0.20)
            const std::string& s = m.as_string();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
                bad_model("merge '" + s + "' is not two tokens separated by one space");
            }
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (m.is_array() && m.items().size() == 2 && m.items()[0].is_string() &&
                   m.items()[1].is_string()) {  // ["a", "b"]
            a = m.items()[0].as_string();
            b = m.items()[1].as_string();
        } else {
            bad_model("each merge must be \"a b\" or [\"a\", \"b\"]");
        }
        const int32_t ia = token_to_id(a), ib = token_to_id(b), in = token_to_id(a + b);
        if (ia < 0 || ib < 0 || in < 0) bad_model("merge '" + a + " " + b + "' names a token not in the vocabulary");
        merges[pair_key(ia, ib)] = Merge{rank++, in};  // a repeated pair keeps its last rank, as tokenizers does
        const std::string_view sa(a), sb(b);
        if (sb.substr(0, kMeta.size()) == kMeta &&
            (sa.size() < kMeta.size() || sa.substr(sa.size() - kMeta.size()) != kMeta)) {
            joins_at_meta = true;
        }
    }
    size_t cap = 16;
    unsigned bits = 4;
    while (cap < merges.size() * 2 + 1) cap <<= 1, ++bits;
    merge_keys_.assign(cap, kEmptyKey);
    merge_vals_.assign(cap, Merge{0, 0});
    merge_mask_ = cap - 1;
    merge_shift_ = 64 - bits;
    for (const auto& [key, m] : merges) {
        size_t i = size_t((key * 0x9E3779B97F4A7C15ull) >> merge_shift_);
        while (merge_keys_[i] != kEmptyKey) i = (i + 1) & merge_mask_;
        merge_keys_[i] = key;
        merge_vals_[i] = m;
    }
    // A word cut before a U+2581 that follows another character tokenizes to the same ids piece
    // by piece, when: no merge joins a symbol not ending in U+2581 to one starting with it (so no
    // merge ever spans the cut), U+2581 is a token (so it starts a symbol of its own, and ends any
    // run of unknown characters being fused), no character is dropped (a dropped one would make
    // its neighbours adjacent across the cut: so an unk token, or byte fallback with all 256 byte
    // tokens), and no whole-word
    // lookup (ignore_merges). Every SentencePiece vocabulary edgert reads qualifies; a whole
    // WikiText-2 file is one word to it, and many short heaps are ~5x faster than one huge one.
    const std::string_view unk = unk_id_ >= 0 ? std::string_view(id_to_token_[size_t(unk_id_)]) : "";
    const bool unk_ends_in_meta = unk.size() >= kMeta.size() && unk.substr(unk.size() - kMeta.size()) == kMeta;
    bool all_bytes = byte_fallback_;
    for (int b = 0; b < 256; ++b) all_bytes = all_bytes && byte_token_[b] >= 0;
    split_at_meta_ = !joins_at_meta && !ignore_merges_ && token_to_id(kMeta) >= 0 &&
                     (all_bytes || unk_id_ >= 0) && !unk_ends_in_meta;
}

void BpeModel::set_byte_alphabet(const std::vector<std::string>& byte_chars) {
    byte_chars_ = byte_chars;
    for (int b = 0; b < 256; ++b) byte_level_id_[b] = token_to_id(byte_chars[size_t(b)]);
}

int32_t BpeModel::token_to_id(std::string_view token) const {
    auto it = vocab_.find(std::string(token));
    return it == vocab_.end() ? -1 : it->second;
}

bool BpeModel::id_to_token(int32_t id, std::string* out) const {
    if (id < 0 || size_t(id) >= id_to_token_.size() || !has_token_[size_t(id)]) return false;
    *out = id_to_token_[size_t(id)];
    return true;
}

void BpeModel::merge_symbols(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
    const int n = int(ids.size());
    if (n == 1) {
        out.push_back(ids[0]);
        return;
    }
    struct Cand {
        uint32_t rank;
        int pos;
        int32_t new_id;
        bool operator<(const Cand& o) const {  // priority_queue pops the largest: invert
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    thread_local std::vector<int> prev, next;
    prev.resize(size_t(n));
    next.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
        prev[size_t(i)] = i - 1;
        next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    }
    std::vector<char> alive(size_t(n), 1);
    std::priority_queue<Cand> queue;
    for (int i = 0; i + 1 < n; ++i) {
        if (const Merge* m = find_merge(ids[size_t(i)], ids[size_t(i + 1)])) queue.push({m->rank, i, m->new_id});
    }
    while (!queue.empty()) {
        const Cand top = queue.top();
        queue.pop();
        const size_t p = size_t(top.pos);
        if (!alive[p] || next[p] < 0) continue;
        const size_t r = size_t(next[p]);
        const Merge* cur = find_merge(ids[p], ids[r]);
        if (!cur || cur->new_id != top.new_id) continue;  // stale
        ids[p] = top.new_id;
        alive[r] = 0;
        next[p] = next[r];
        if (next[r] >= 0) prev[size_t(next[r])] = int(p);
        if (prev[p] >= 0) {
            if (const Merge* m = find_merge(ids[size_t(prev[p])], ids[p])) queue.push({m->rank, prev[p], m->new_id});
        }
        if (next[p] >= 0) {
            if (const Merge* m = find_merge(ids[p], ids[size_t(next[p])])) queue.push({m->rank, int(p), m->new_id});
        }
    }
    for (int i = 0; i < n; ++i) {
        if (alive[size_t(i)]) out.push_back(ids[size_t(i)]);
    }
    if (prev.capacity() > kKeepScratch) {  // one huge word (a whole SentencePiece text) must
        std::vector<int>().swap(prev);     // not pin its scratch to the thread forever
        std::vector<int>().swap(next);
    }
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
    if (!split_at_meta_) return encode_piece(word, out);
    // Cut before each U+2581 not preceded by another (valid UTF-8: a match is always on a
    // character boundary, since 0xE2 is a lead byte); see the constructor for why it is exact.
    size_t start = 0;
    for (size_t pos = word.find(kMeta, 1); pos != std::string_view::npos; pos = word.find(kMeta, pos + kMeta.size())) {
        if (pos >= kMeta.size() && word.substr(pos - kMeta.size(), kMeta.size()) == kMeta) continue;
        encode_piece(word.substr(start, pos - start), out);
        start = pos;
    }
    encode_piece(word.substr(start), out);
}

void BpeModel::encode_piece(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
        const int32_t whole = token_to_id(word);
        if (whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    thread_local std::vector<int32_t> ids;
    ids.clear();
    const auto* s = reinterpret_cast<const unsigned char*>(word.data());
    const size_t n = word.size();
    int32_t pending_unk = -1;  // a run of unknown characters not yet added (fuse_unk)
    std::string ch;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = s[i] < 0x80 ? 1 : utf8::decode(s + i, n - i, &cp);
        if (len == 0) len = 1;  // never for validated text
        ch.assign(word.data() + i, len);
        const int32_t id = token_to_id(ch);
        i += len;
        if (id >= 0) {
            if (pending_unk >= 0) ids.push_back(pending_unk), pending_unk = -1;
            ids.push_back(id);
            continue;
        }
        if (byte_fallback_) {
            bool all = true;
            for (unsigned char b : ch) all = all && byte_token_[b] >= 0;
            if (all) {
                if (pending_unk >= 0) ids.push_back(pending_unk), pending_unk = -1;
                for (unsigned char b : ch) ids.push_back(byte_token_[b]);
                continue;
            }
        }
        if (unk_id_ >= 0) {
            if (pending_unk >= 0 && !fuse_unk_) ids.push_back(pending_unk);
            pending_unk = unk_id_;
        }
        // no unk token: the character is dropped, as tokenizers does
    }
    if (pending_unk >= 0) ids.push_back(pending_unk);
    if (!ids.empty()) merge_symbols(ids, out);
    if (ids.capacity() > kKeepScratch) std::vector<int32_t>().swap(ids);
}

void BpeModel::encode_byte_level_word(std::string_view bytes, std::vector<int32_t>& out) const {
    if (bytes.empty()) return;
    bool simple = true;
    for (unsigned char b : bytes) simple = simple && byte_level_id_[b] >= 0;
    if (!simple || ignore_merges_) {  // rare paths: go through the mapped string
        std::string mapped;
        for (unsigned char b : bytes) mapped += byte_chars_[b];
        encode_word(mapped, out);
        return;
    }
    thread_local std::vector<int32_t> ids;
    ids.clear();
    for (unsigned char b : bytes) ids.push_back(byte_level_id_[b]);
    merge_symbols(ids, out);
}

}  // namespace edgert
