// unicode_props.h — the Unicode facts the tokenizer needs, from generated tables
// (unicode_tables.inc, Unicode EDGERT_UNICODE_VERSION; see native/tools/gen_unicode_tables.py).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace edgert::unicode {

enum : uint8_t {
    kLetter = 1,      // general category L* (regex \p{L})
    kNumber = 2,      // general category N* (regex \p{N}; Rust's char::is_numeric)
    kWhiteSpace = 4,  // White_Space (regex \s; Rust's char::is_whitespace)
    kNfcSensitive = 8 // NFC may rewrite it or compose it with a neighbour
};

// Flags of one code point (0 for unassigned, surrogates and anything above U+10FFFF). O(1).
uint8_t flags(uint32_t cp);

// The Unicode version the tables were generated from, e.g. "16.0.0".
const char* version();

// NFC of valid UTF-8 text (canonical decomposition, canonical ordering, canonical composition).
std::string nfc(std::string_view text);

}  // namespace edgert::unicode
