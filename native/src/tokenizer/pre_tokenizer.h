// pre_tokenizer.h — the pre-tokenization regexes of the byte-level BPE families, as hand-written
// matchers over code-point classes (no regex engine), plus the Digits split.
//
// Each matcher reproduces one regex exactly, leftmost-first alternation and backtracking included,
// as Oniguruma runs it inside Hugging Face `tokenizers` (pattern texts below):
//   kGpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kLlama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2   as kLlama3 with \p{N} instead of \p{N}{1,3}
// Every code point is L, N, White_Space or none of them, so the matches tile the text (no gaps).
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace edgert {

enum class SplitPattern { kGpt2, kLlama3, kQwen2 };

// The pattern a tokenizer.json regex text names, or false if it is none of the three.
bool split_pattern_from_regex(std::string_view regex, SplitPattern* out);

using ByteRange = std::pair<uint32_t, uint32_t>;  // [begin, end) byte offsets

// Appends the byte ranges of the pieces of valid UTF-8 `text` under `pattern`.
void split_by_pattern(SplitPattern pattern, std::string_view text, std::vector<ByteRange>& out);

// Appends the pieces of `text` with every numeric code point (general category N) on its own
// (individual = true) or each run of them together, as `tokenizers`' Digits pre-tokenizer.
void split_digits(std::string_view text, bool individual, std::vector<ByteRange>& out);

}  // namespace edgert
