// message_text.h — bytes from a file (tensor names, JSON strings, paths) made fit for an error
// message. Messages travel as text: edgert_last_error() is documented as a C string, the Python
// binding turns it into a str and the JNI bridge into a Java String, all of which need valid
// UTF-8. So invalid UTF-8 is escaped where a message is built from untrusted bytes, and
// set_last_error() applies escape_invalid_utf8 once more to whatever reaches the C API boundary.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace edgert {

// `bytes` in single quotes for a message: valid UTF-8 kept; invalid bytes, ASCII control
// characters (a newline or a terminal escape in a name) and the backslash written as \xNN;
// cut after max_bytes of input with "..." so a 1 KB name cannot flood a log line.
std::string quote_bytes(std::string_view bytes, size_t max_bytes = 200);

// `text` with every byte that is not part of a valid UTF-8 sequence (RFC 3629: no overlong
// forms, surrogates or code points past U+10FFFF) written as \xNN; valid text is unchanged.
std::string escape_invalid_utf8(std::string_view text);

// Length of the valid UTF-8 sequence starting at p (p < end), or 0 if the bytes there are not
// one. ASCII is 1.
size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end);

bool is_valid_utf8(std::string_view text);

}  // namespace edgert
