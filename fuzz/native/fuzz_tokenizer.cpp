// fuzz_tokenizer.cpp — libFuzzer target for the native tokenizer and chat formatter
// (native/src/tokenizer/, native/src/chat/). The first input byte picks the entry point:
//   0  encode the rest as text with a byte-level BPE tokenizer (GPT-2 regex + Digits)
//   1  encode the rest as text with a SentencePiece-style tokenizer (byte fallback, NFC)
//   2  build a tokenizer from the rest as tokenizer.json, then encode and decode with it
//   3  decode / stream-decode the rest as int32 ids (both tokenizers)
//   4  format a chat: the rest split at NUL into template, then role/content pairs
// Contract checked: no crash, no sanitizer report, and only StatusError escapes (with a
// documented status); decode(encode(text)) == text for valid text under the byte-level model.
//
// Build (clang with libFuzzer; see fuzz/native/run.sh where it exists):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Inative/src -Inative/include \
//     fuzz/native/fuzz_tokenizer.cpp native/src/tokenizer/{unicode_props,pre_tokenizer,bpe,tokenizer}.cpp \
//     native/src/chat/chat_format.cpp native/src/core/json.cpp -o fuzz_tokenizer
//   ./fuzz_tokenizer fuzz/native/corpus/tokenizer
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "chat/chat_format.h"
#include "core/status_error.h"
#include "tokenizer/tokenizer.h"

namespace {

// A small but complete byte-level vocabulary: the 256 byte characters plus a few merges.
std::string byte_level_json() {
    std::string vocab, merges;
    int id = 0;
    std::vector<std::string> chars(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = keep ? uint32_t(b) : uint32_t(256 + extra++);
        std::string s;
        if (cp < 0x80) s += char(cp);
        else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
        chars[size_t(b)] = s;
        std::string esc = s == "\"" ? "\\\"" : s == "\\" ? "\\\\" : s;
        vocab += (id ? "," : "") + std::string("\"") + esc + "\":" + std::to_string(id);
        ++id;
    }
    const char* pairs[][2] = {{"t", "h"}, {"th", "e"}, {"\xc4\xa0", "t"}, {"\xc4\xa0t", "h"},
                              {"\xc4\xa0th", "e"}, {"i", "n"}};
    for (const auto& p : pairs) {
        vocab += ",\"" + std::string(p[0]) + p[1] + "\":" + std::to_string(id++);
        merges += std::string(merges.empty() ? "" : ",") + "\"" + p[0] + " " + p[1] + "\"";
    }
    return R"({"added_tokens":[{"id":)" + std::to_string(id) +
           R"(,"content":"<|end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],)"
           R"("normalizer":null,"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},)"
           R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true}]},"decoder":{"type":"ByteLevel"},)"
           R"("model":{"type":"BPE","vocab":{)" + vocab + R"(},"merges":[)" + merges + "]}}";
}

std::string sentencepiece_json() {
    std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2)";
    int id = 3;
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
        vocab += ",\"<0x" + std::string(1, hex[b >> 4]) + hex[b & 15] + ">\":" + std::to_string(id++);
    }
    for (const char* t : {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "\xc3\xa9"}) {
        vocab += ",\"" + std::string(t) + "\":" + std::to_string(id++);
    }
    return R"({"added_tokens":[{"id":1,"content":"<s>","special":true,"normalized":false},)"
           R"({"id":2,"content":"</s>","special":true,"normalized":false,"rstrip":true}],)"
           R"("normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Prepend","prepend":"\u2581"},)"
           R"({"type":"Replace","pattern":{"String":" "},"content":"\u2581"}]},"pre_tokenizer":null,)"
           R"("decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"\u2581"},"content":" "},)"
           R"({"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},)"
           R"("model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,"vocab":{)" + vocab +
           R"(},"merges":["\u2581 a","a b"]}})";
}

const edgert::Tokenizer& byte_level() {
    static const edgert::Tokenizer t(byte_level_json(), {1, {2}, true, true});
    return t;
}

const edgert::Tokenizer& sentencepiece() {
    static const edgert::Tokenizer t(sentencepiece_json(), {1, {2}, true, false});
    return t;
}

bool documented(edgert_status s) {
    return s == EDGERT_ERR_INVALID_TEXT || s == EDGERT_ERR_FORMAT || s == EDGERT_ERR_UNSUPPORTED ||
           s == EDGERT_ERR_INVALID_ARGUMENT;
}

void exercise(const edgert::Tokenizer& tok, const std::string& text, bool check_round_trip) {
    (void)tok.encode(text, true, false);  // BOS/EOS added, specials as plain text
    const std::vector<int32_t> ids = tok.encode(text, false, true);
    const std::string back = tok.decode(ids.data(), ids.size(), true);
    if (check_round_trip && back != text) std::abort();  // byte-level BPE is lossless
    edgert::DecodeStream stream(tok, nullptr, 0, false);
    for (int32_t id : ids) (void)stream.step(id);
    (void)stream.flush();
    for (int32_t id : ids) (void)tok.piece(id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (data[0] % 5) {
            case 0: {
                // the special token is parsed out of the text, so the round trip holds only
                // when the text does not spell it
                const bool plain = rest.find("<|end|>") == std::string::npos;
                exercise(byte_level(), rest, plain);
                break;
            }
            case 1: exercise(sentencepiece(), rest, false); break;
            case 2: {
                edgert::Tokenizer tok(rest, {0, {0}, true, true});
                exercise(tok, "Hello wörld 123 😀 <|end|>", false);
                break;
            }
            case 3: {
                std::vector<int32_t> ids(rest.size() / 4);
                std::memcpy(ids.data(), rest.data(), ids.size() * 4);
                for (int32_t& id : ids) id = int32_t(uint32_t(id) % 400u);  // ids inside the vocab
                for (const edgert::Tokenizer* tok : {&byte_level(), &sentencepiece()}) {
                    (void)tok->decode(ids.data(), ids.size(), false);
                    edgert::DecodeStream stream(*tok, ids.data(), ids.size() / 2, false);
                    for (size_t i = ids.size() / 2; i < ids.size(); ++i) (void)stream.step(ids[i]);
                    (void)stream.flush();
                }
                break;
            }
            default: {
                std::vector<std::string> parts;
                size_t a = 0;
                for (size_t b; (b = rest.find('\0', a)) != std::string::npos; a = b + 1) parts.push_back(rest.substr(a, b - a));
                parts.push_back(rest.substr(a));
                std::vector<edgert::ChatMessage> messages;
                for (size_t i = 1; i + 1 < parts.size(); i += 2) messages.push_back({parts[i], parts[i + 1]});
                (void)edgert::format_chat(parts[0], messages, data[0] & 8, "<s>", "</s>");
                break;
            }
        }
    } catch (const edgert::StatusError& e) {
        if (!documented(e.status())) std::abort();
    }
    return 0;
}
