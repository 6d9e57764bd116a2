// test_json_crc.cpp — the loader's own JSON parser (values, escapes, surrogates, numbers, depth
// limit, speed on a multi-MB string) and its CRC-32 against zlib's known answers.
#include <chrono>
#include <cstring>
#include <string>

#include "check.h"
#include "core/crc32.h"
#include "core/json.h"
#include "edgt_writer.h"

using edgert::JsonError;
using edgert::JsonValue;
using edgert::parse_json;

namespace {

JsonValue parse(const std::string& s) { return parse_json(s.data(), s.size()); }

bool fails(const std::string& s, int depth = 64) {
    try {
        parse_json(s.data(), s.size(), depth);
        return false;
    } catch (const JsonError&) {
        return true;
    }
}

void test_values() {
    JsonValue v = parse(" {\"a\": [1, -2.5e2, true, false, null], \"b\": {\"c\": \"d\"}, \"n\": -0} ");
    CHECK(v.is_object());
    const JsonValue* a = v.find("a");
    CHECK(a && a->is_array() && a->items().size() == 5);
    if (a && a->items().size() == 5) {
        CHECK(a->items()[0].is_integer() && a->items()[0].as_integer() == 1);
        CHECK(!a->items()[1].is_integer() && a->items()[1].as_number() == -250.0);
        CHECK(a->items()[2].is_bool() && a->items()[2].as_bool());
        CHECK(a->items()[3].is_bool() && !a->items()[3].as_bool());
        CHECK(a->items()[4].is_null());
    }
    CHECK(v.find("b") && v.find("b")->find("c") && v.find("b")->find("c")->as_string() == "d");
    CHECK(v.find("missing") == nullptr);
    CHECK(parse("12345678901234").as_integer() == 12345678901234LL);
    CHECK(!parse("99999999999999999999").is_integer());  // beyond int64: a double, not an integer
    CHECK(parse("1.5").as_number() == 1.5);
    CHECK(parse("[]").items().empty() && parse("{}").members().empty());
}

void test_strings() {
    CHECK(parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"").as_string() == "a\"b\\c/d\b\f\n\r\t");
    CHECK(parse("\"\\u00e9\"").as_string() == "\xC3\xA9");
    CHECK(parse("\"\\u20AC\"").as_string() == "\xE2\x82\xAC");
    CHECK(parse("\"\\ud83d\\ude00\"").as_string() == "\xF0\x9F\x98\x80");  // surrogate pair
    CHECK(parse("\"\xF0\x9F\x98\x80 raw\"").as_string() == "\xF0\x9F\x98\x80 raw");
    CHECK(parse("\"\\u0000\"").as_string() == std::string(1, '\0'));
    CHECK(fails("\"\\ud83d\""));
    CHECK(fails("\"\\ude00\\ud83d\""));
    CHECK(fails("\"abc"));
    CHECK(fails("\"\xFF\""));
}

void test_strictness() {
    for (const char* bad : {"", " ", "01", "1.", ".5", "-", "1e", "+1", "[1,]", "{\"a\":1,}", "[1 2]",
                            "{\"a\" 1}", "{1: 2}", "nul", "True", "[1]]", "\"a\" \"b\"", "Infinity",
                            "{\"a\": 1, \"a\": 2}"}) {
        CHECK_MSG(fails(bad), "accepted: %s", bad);
    }
    CHECK(!fails("[[[[1]]]]", 4));
    CHECK(fails("[[[[[1]]]]]", 4));
    CHECK(fails(std::string(1000000, '['), 64));
}

void test_big_string_speed() {
    // The metadata's tokenizer.json is a multi-MB string with escaped quotes and some non-ASCII.
    std::string body;
    while (body.size() < 8u << 20) body += "{\\\"merges\\\": [\\\"a b\\\", \\\"\xC4\xA0t he\\\"]}, ";
    const std::string doc = "{\"tokenizer\": {\"json\": \"" + body + "\"}}";
    auto t0 = std::chrono::steady_clock::now();
    JsonValue v = parse(doc);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const JsonValue* s = v.find("tokenizer") ? v.find("tokenizer")->find("json") : nullptr;
    CHECK(s && s->is_string() && s->as_string().size() < body.size() &&
          s->as_string().compare(0, 12, "{\"merges\": [") == 0);
    std::printf("parsed %.1f MB of JSON string in %.1f ms\n", double(doc.size()) / 1e6, ms);
    // Generous (sanitizer builds are slow): a byte-at-a-time parser with reallocations would not
    // be far off, but a quadratic one would.
    CHECK_MSG(ms < 5000, "parsing took %.0f ms", ms);
}

void test_crc32() {
    const char* s = "123456789";
    CHECK(edgert::crc32_update(0, s, 9) == 0xCBF43926u);  // the standard check value
    CHECK(edgert::crc32_update(0, "", 0) == 0u);
    CHECK(edgert::crc32_update(0, "a", 1) == 0xE8B7BE43u);  // zlib.crc32(b"a")
    // Chaining equals one pass, for every split and length (covers the sliced fast path's tails).
    std::string data;
    for (int i = 0; i < 300; ++i) data += char(i * 37 + 11);
    for (size_t n = 0; n < data.size(); n += 7) {
        for (size_t split = 0; split <= n; split += 5) {
            uint32_t whole = edgert::crc32_update(0, data.data(), n);
            uint32_t parts = edgert::crc32_update(edgert::crc32_update(0, data.data(), split),
                                                  data.data() + split, n - split);
            CHECK(whole == parts);
            CHECK(whole == edgert_test::zlib_crc32(0, data.data(), n));
        }
    }
}

}  // namespace

int main() {
    test_values();
    test_strings();
    test_strictness();
    test_big_string_speed();
    test_crc32();
    return edgert_test::finish("test_json_crc");
}
