// fuzz_metadata_json.cpp — the metadata of a .edgt file on its own: core/json.cpp's strict JSON
// parser, then the metadata reader (core/metadata.cpp: required keys, types, ranges). Both are
// reached through the loader too, but behind the header CRC and the container checks; here every
// execution is a parse. A value parse_json accepts must also be accepted again after a
// round trip through its own canonical text (the parser agrees with itself).
#include <string>
#include <string_view>

#include "core/json.h"
#include "core/metadata.h"
#include "core/status_error.h"
#include "fuzz_common.h"

using namespace edgert_fuzz;

namespace {

void append_escaped(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    out += '"';
}

// Canonical text of a parsed value (numbers as the shortest round-tripping %.17g).
void serialize(const edgert::JsonValue& v, std::string& out) {
    using T = edgert::JsonValue::Type;
    switch (v.type()) {
        case T::Null: out += "null"; return;
        case T::Bool: out += v.as_bool() ? "true" : "false"; return;
        case T::Number: {
            char buf[40];
            if (v.is_integer()) std::snprintf(buf, sizeof buf, "%lld", (long long)v.as_integer());
            else std::snprintf(buf, sizeof buf, "%.17g", v.as_number());
            out += buf;
            return;
        }
        case T::String: append_escaped(out, v.as_string()); return;
        case T::Array:
            out += '[';
            for (size_t i = 0; i < v.items().size(); ++i) {
                if (i) out += ',';
                serialize(v.items()[i], out);
            }
            out += ']';
            return;
        case T::Object:
            out += '{';
            for (size_t i = 0; i < v.members().size(); ++i) {
                if (i) out += ',';
                append_escaped(out, v.members()[i].first);
                out += ':';
                serialize(v.members()[i].second, out);
            }
            out += '}';
            return;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const char* text = reinterpret_cast<const char*>(data);
    try {
        const edgert::JsonValue v = edgert::parse_json(text, size, 64);
        std::string again;
        serialize(v, again);
        try {
            edgert::parse_json(again.data(), again.size(), 64);
        } catch (const edgert::JsonError& e) {
            finding("parse_json rejects the canonical text of a value it accepted: %s", e.what());
        }
    } catch (const edgert::JsonError& e) {
        if (!is_valid_utf8(e.what())) finding("a JSON error message is not valid UTF-8");
    }
    try {
        edgert::parse_metadata(std::string_view(text, size));
    } catch (const edgert::StatusError& e) {
        const edgert_status st = e.status();
        if (st != EDGERT_ERR_FORMAT && st != EDGERT_ERR_VERSION && st != EDGERT_ERR_UNSUPPORTED) {
            finding("parse_metadata failed with %s: %s", edgert_status_string(st), e.what());
        }
        if (!is_valid_utf8(e.what())) finding("a metadata error message is not valid UTF-8: %s", e.what());
    }
    return 0;
}
