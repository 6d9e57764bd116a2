// tokenizer.h — the native tokenizer: the entry point of tokenizer/.
//
// Built from the tokenizer.json text a .edgt file carries plus the file's own BOS/EOS facts, and
// equal token for token to Hugging Face `tokenizers` (tokenizer.encode(text,
// add_special_tokens=False), with the file's add_bos/add_eos applied instead of the
// post-processor, as edgert/tokenizer.py does). What it reads of tokenizer.json:
//   added_tokens   matched in the text first (leftmost-longest; lstrip/rstrip/single_word;
//                  normalized ones after normalization); special ones only when parse_special
//   normalizer     null | NFC | Prepend | Replace (plain string) | Sequence of these
//   pre_tokenizer  null | ByteLevel | Split (the GPT-2 / Llama 3 / Qwen2 regexes, isolated) |
//                  Digits | Metaspace | Sequence of these (ByteLevel last)
//   model          BPE (vocab, merges, unk_token, byte_fallback, fuse_unk, ignore_merges)
//   decoder        null | ByteLevel | Metaspace | Replace | ByteFallback | Fuse | Strip | Sequence
// Anything else fails to build with EDGERT_ERR_UNSUPPORTED naming it. The post_processor is ignored
// on purpose (the file's add_bos/add_eos rule), and so are truncation and padding.
//
// Immutable after construction: one Tokenizer serves any number of threads.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"

namespace edgert {

struct TokenizerConfig {
    int32_t bos_id = -1;
    std::vector<int32_t> eos_ids;
    bool add_bos = false;
    bool add_eos = false;
    // The model's vocabulary size: bounds the JSON values tokenizer.json may hold (a vocabulary
    // entry and a merge take 1-3 values each), so a hostile document cannot make parsing take
    // ~75x its size in memory (core/json.h). 0: the generic metadata bound (kJsonMaxValues).
    int32_t vocab_size = 0;
};

class Tokenizer {
public:
    // Throws StatusError: EDGERT_ERR_FORMAT (malformed tokenizer.json), EDGERT_ERR_UNSUPPORTED
    // (a model, normalizer, pre-tokenizer or decoder this runtime does not implement).
    Tokenizer(std::string_view tokenizer_json, TokenizerConfig config);
    ~Tokenizer();

    // Token ids of UTF-8 text. add_special: prepend BOS / append EOS as the file says.
    // parse_special: special added tokens written in the text become their ids (as `tokenizers`
    // does by default); otherwise they are tokenized as plain text. Throws StatusError
    // EDGERT_ERR_INVALID_TEXT (with the byte offset) when text is not valid UTF-8.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

    // Text of ids as `tokenizers`' decode(ids, skip_special_tokens) gives it (invalid UTF-8 from
    // byte tokens becomes U+FFFD the way its decoders do). Ids with no token decode to nothing.
    std::string decode(const int32_t* ids, size_t n, bool skip_special) const;

    // The bytes one token contributes in the middle of a text: byte tokens are their raw byte
    // (possibly part of a UTF-8 character), SentencePiece's "▁" a space, no start-of-text strip.
    std::string piece(int32_t id) const;

    int32_t n_tokens() const;        // 1 + the largest id the tokenizer knows
    bool is_special(int32_t id) const;
    int32_t token_to_id(std::string_view token) const;  // vocabulary or added token, -1 if none
    // The token's text as tokenizer.json spells it (`tokenizers`' id_to_token), "" if none.
    std::string token_text(int32_t id) const;
    const TokenizerConfig& config() const { return config_; }

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
    TokenizerConfig config_;
};

// Streaming detokenization with `tokenizers.decoders.DecodeStream`'s rule: decode a short window
// of recent ids and emit what it adds to the previous window's text, unless that ends in U+FFFD
// (a character still incomplete). So a chunk never ends inside a character, and the text equals
// the full decode's for valid output.
class DecodeStream {
public:
    // context: ids already in the text before the stream starts (only the last few are used), so
    // the first piece decodes as it does inside the full text (SentencePiece's leading space).
    DecodeStream(const Tokenizer& tok, const int32_t* context, size_t n_context, bool skip_special);
    // The text this id completes ("" while a character is incomplete).
    std::string step(int32_t id);
    // Whatever is still held back (an incomplete character at the end, as U+FFFD); resets.
    std::string flush();

private:
    const Tokenizer& tok_;
    bool skip_special_;
    std::vector<int32_t> ids_;
    std::string prefix_;
    size_t prefix_index_ = 0;
    bool fed_ = false;  // a token was fed since the start or the last flush
}; 

}  // namespace edgert
