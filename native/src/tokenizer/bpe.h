// bpe.h — the BPE model of a tokenizer.json ("model": {"type": "BPE", ...}), with the semantics of
// Hugging Face `tokenizers`' BPE: a word starts as one symbol per character (unknown characters
// become their <0xNN> byte tokens under byte_fallback, else the unk token, fused when fuse_unk),
// then the adjacent pair of lowest merge rank is merged, leftmost first, until none is left.
// ignore_merges: a word that is itself in the vocabulary is one token (Llama 3).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace edgert {

class JsonValue;

class BpeModel {
public:
    // Reads model.vocab / merges / unk_token / byte_fallback / fuse_unk / ignore_merges. Throws
    // StatusError: EDGERT_ERR_FORMAT for a malformed model, EDGERT_ERR_UNSUPPORTED for options
    // this runtime does not implement (dropout, continuing_subword_prefix, end_of_word_suffix).
    explicit BpeModel(const JsonValue& model);

    // Appends the ids of one pre-tokenized word (valid UTF-8).
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    // As encode_word for a byte-level word given as raw bytes: byte b is the character
    // byte_chars[b] of GPT-2's byte alphabet (avoids building the mapped string).
    void encode_byte_level_word(std::string_view bytes, std::vector<int32_t>& out) const;
    void set_byte_alphabet(const std::vector<std::string>& byte_chars);

    int32_t token_to_id(std::string_view token) const;  // -1 if absent
    // Token text by id ("" and false when the id has no token).
    bool id_to_token(int32_t id, std::string* out) const;
    int32_t size() const { return int32_t(id_to_token_.size()); }

private:
    struct Merge {
        uint32_t rank;
        int32_t new_id;
    };
    static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    void merge_symbols(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;
    void encode_piece(std::string_view word, std::vector<int32_t>& out) const;
    // The merge of pair (a, b), or nullptr: open addressing over merge_keys_/merge_vals_ (the
    // merge lookup is the inner loop of BPE; std::unordered_map's node chasing cost ~2x).
    const Merge* find_merge(int32_t a, int32_t b) const {
        const uint64_t key = pair_key(a, b);
        size_t i = size_t((key * 0x9E3779B97F4A7C15ull) >> merge_shift_);
        for (;; i = (i + 1) & merge_mask_) {
            if (merge_keys_[i] == key) return &merge_vals_[i];
            if (merge_keys_[i] == kEmptyKey) return nullptr;
        }
    }
    static constexpr uint64_t kEmptyKey = ~uint64_t(0);

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::vector<uint8_t> has_token_;
    std::vector<uint64_t> merge_keys_;
    std::vector<Merge> merge_vals_;
    size_t merge_mask_ = 0;
    unsigned merge_shift_ = 64;
    int32_t unk_id_ = -1;
    bool byte_fallback_ = false;
    bool fuse_unk_ = false;
    bool ignore_merges_ = false;
    // SentencePiece speed-up: a word may be cut before each U+2581 that follows another character
    // (see encode_word); true when no merge can join across such a cut.
    bool split_at_meta_ = false;
    int32_t byte_token_[256];        // <0xNN> ids, -1 when absent
    int32_t byte_level_id_[256];     // id of the byte-alphabet character of each byte, -1 absent
    std::vector<std::string> byte_chars_;
};

}  // namespace edgert
