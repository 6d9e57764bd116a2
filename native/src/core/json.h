// json.h — a small strict JSON (RFC 8259) parser for the metadata of .edgt files.
//
// Strict: no comments, trailing commas, leading zeros, NaN/Infinity, raw control characters,
// invalid UTF-8, lone surrogates or duplicate object keys. Nesting is limited (max_depth) so a
// hostile file cannot exhaust the stack, and so is the number of values (max_values): a value
// takes ~150 bytes in memory but 2 in the text ("0,"), so without a limit a document's memory
// would be ~75x its size. Memory is at most max_values * sizeof(JsonValue) (+ keys) plus the
// string bytes, which are at most the document's size. The metadata carries a multi-MB tokenizer.json as one
// string, so string scanning copies escape-free runs in bulk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgert {

class JsonError : public std::runtime_error {
public:
    JsonError(const std::string& what, size_t offset)
        : std::runtime_error(what + " at byte " + std::to_string(offset)), offset_(offset) {}
    size_t offset() const { return offset_; }

private:
    size_t offset_;
};

class JsonValue {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_number() const { return type_ == Type::Number; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_object() const { return type_ == Type::Object; }

    bool as_bool() const { return bool_; }
    double as_number() const { return number_; }
    // True if the number was written without fraction or exponent and fits in int64.
    bool is_integer() const { return type_ == Type::Number && is_integer_; }
    int64_t as_integer() const { return integer_; }
    const std::string& as_string() const { return string_; }
    const std::vector<JsonValue>& items() const { return items_; }
    const std::vector<std::pair<std::string, JsonValue>>& members() const { return members_; }

    // Member of an object by key, or nullptr (also when this is not an object).
    const JsonValue* find(const std::string& key) const;

private:
    friend class JsonParser;
    Type type_ = Type::Null;
    bool bool_ = false;
    bool is_integer_ = false;
    double number_ = 0.0;
    int64_t integer_ = 0;
    std::string string_;
    std::vector<JsonValue> items_;
    std::vector<std::pair<std::string, JsonValue>> members_;
};

// Parses exactly one JSON value (surrounding whitespace allowed). Throws JsonError.
constexpr size_t kJsonMaxValues = 65536;
JsonValue parse_json(const char* text, size_t size, int max_depth = 64,
                     size_t max_values = kJsonMaxValues);

}  // namespace edgert
