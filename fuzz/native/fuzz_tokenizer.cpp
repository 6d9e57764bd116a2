// fuzz_tokenizer.cpp — the text half of the C API (edgert.h, ABI 2) from the fuzzer: the native
// tokenizer, the streaming detokenizer, chat formatting and generation over text, on two tiny
// models whose tokenizer.json is written here (byte-level BPE with a GPT-2-style pipeline and an
// added special token; SentencePiece-style BPE with NFC, byte fallback and the Metaspace-like
// decoder sequence), plus a third built per input from the input's own tokenizer.json.
//
// Input: byte 0 picks the mode (byte 0 % 6) and flags (the bits above); the rest is the payload.
//   0, 1  text through model A (0) or B (1): edgert_tokenize (capacity 0, then half, then all),
//         edgert_detokenize, edgert_token_to_piece per id, a detokenizer fed id by id
//   2     the payload as tokenizer.json of a fresh model, then every text function on it
//   3     the payload as int32 ids (any value): detokenize, pieces, a detokenizer whose context
//         is the first half, fed the second half, on both models
//   4     the payload split at NUL: chat template ("" = the model's own), then role/content pairs;
//         edgert_chat_template_family, edgert_chat_format, the prompt tokenized
//   5     the payload (<= 256 bytes) as a prompt: edgert_generate_text, 4 tokens, greedy
// Oracle, beyond fuzz_common.h's (documented statuses, messages non-empty valid UTF-8):
//   - tokenize fails with EDGERT_ERR_INVALID_TEXT exactly when the text is not valid UTF-8, and
//     returns ids inside the vocabulary, at most text_len + 3 of them, the same ones at any
//     capacity;
//   - detokenize and every detokenizer piece are valid UTF-8, and a piece never ends inside a
//     character; ids fail with EDGERT_ERR_TOKEN exactly when one lies outside [0, vocab);
//   - model A is lossless: detokenize(tokenize(text)) == text, and the detokenizer's pieces
//     joined equal detokenize's text (model B too);
//   - chat formatting fails with EDGERT_ERR_INVALID_TEXT only for input that is not UTF-8, fails
//     with EDGERT_ERR_UNSUPPORTED exactly when edgert_chat_template_family says no family, and
//     its output is valid UTF-8 that tokenizes;
//   - generated pieces are valid UTF-8.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz_common.h"

using namespace edgert_fuzz;

namespace {

constexpr int32_t kVocab = 272;  // the models' embedding rows; both tokenizers use fewer ids
constexpr int32_t kEndId = 262;  // model A's added special token <|end|>

bool valid_utf8(const std::string& s) {
    if (s.find('\0') == std::string::npos) return is_valid_utf8(s.c_str());
    size_t a = 0;  // NULs are valid UTF-8; check the runs between them
    for (size_t b; (b = s.find('\0', a)) != std::string::npos; a = b + 1) {
        if (!is_valid_utf8(s.substr(a, b - a).c_str())) return false;
    }
    return is_valid_utf8(s.substr(a).c_str());
}

std::string json_string(const std::string& s) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    for (const unsigned char c : s) {
        if (c == '"' || c == '\\') out += '\\', out += char(c);
        else if (c < 0x20) out += "\\u00", out += hex[c >> 4], out += hex[c & 15];
        else out += char(c);
    }
    return out + "\"";
}

// Model A's tokenizer: the 256 byte characters, six merges, and <|end|>.
std::string byte_level_json() {
    std::string vocab, merges;
    int id = 0, extra = 0;
    for (int b = 0; b < 256; ++b) {
        const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        const uint32_t cp = keep ? uint32_t(b) : uint32_t(256 + extra++);
        std::string s;
        if (cp < 0x80) s += char(cp);
        else s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
        vocab += (id ? "," : "") + json_string(s) + ":" + std::to_string(id++);
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

// Model B's tokenizer: <unk> <s> </s>, the 256 <0xNN> byte tokens, a few pieces and merges.
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

// SmolLM2's template shape (ChatML with a default system turn) and Llama 2's.
const char* const kChatml =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* const kLlama2 =
    "{% if messages[0]['role'] == 'system' %}<<SYS>>\\n{% endif %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{{ ' '  + content.strip() + ' ' + eos_token }}";

// A tiny model with the given tokenizer.json and chat template, written to a scratch file and
// loaded. Returns the load's status (the metadata is well formed, so only the tokenizer varies).
edgert_status load_model(const std::string& tokenizer_json, const char* chat_template, bool add_eos,
                         edgert_model** out) {
    edgert_test::TinyLlamaSpec s;
    s.vocab = kVocab;
    s.hidden = 32;
    s.ffn = 32;
    s.layers = 1;
    s.heads = 2;
    s.kv_heads = 1;
    s.head_dim = 16;
    s.context = 64;
    s.seed = 3;
    edgert_test::EdgtBuilder b = edgert_test::make_tiny_llama(s);
    const size_t from = b.metadata.find("\"tokenizer\":");
    const size_t to = b.metadata.find("\"future_key\"");
    if (from == std::string::npos || to == std::string::npos) finding("edgt_writer's metadata changed shape");
    b.metadata.replace(from, to - from,
                       "\"tokenizer\": {\"json\": " + json_string(tokenizer_json) +
                           ", \"bos_token_id\": 1, \"eos_token_ids\": [2], \"add_bos\": true, \"add_eos\": " +
                           (add_eos ? "true" : "false") + "}, \"chat_template\": " +
                           (chat_template ? json_string(chat_template) : "null") + ", ");
    const std::vector<uint8_t> bytes = b.build();
    // A model maps its file: each load gets its own file, unlinked once loaded (rewriting a
    // mapped file would pull the pages from under the fixed models).
    static int loads = 0;
    const std::string path = scratch_path(("tokenizer_model_" + std::to_string(loads++) + ".edgt").c_str());
    write_all(path, bytes.data(), bytes.size());
    const edgert_status st = edgert_model_load(path.c_str(), nullptr, out);
    unlink(path.c_str());
    return st;
}

edgert_model* fixed_model(int which) {
    static edgert_model* models[2] = {nullptr, nullptr};
    if (!models[which]) {
        const edgert_status st = which == 0 ? load_model(byte_level_json(), kChatml, true, &models[0])
                                            : load_model(sentencepiece_json(), kLlama2, false, &models[1]);
        if (st != EDGERT_OK) finding("fixed model %d does not load: %s", which, edgert_last_error());
    }
    return models[which];
}

bool in_vocab(int32_t id) { return id >= 0 && id < kVocab; }

// ids of text, or false after a documented failure. Checks the capacity protocol on the way.
bool tokenize(edgert_model* m, const std::string& text, int32_t flags, std::vector<int32_t>* ids,
              std::initializer_list<edgert_status> allowed) {
    int32_t n = -1;
    const edgert_status st = edgert_tokenize(m, text.data(), text.size(), flags, nullptr, 0, &n);
    if (st == EDGERT_ERR_INVALID_TEXT && valid_utf8(text)) finding("valid UTF-8 refused as invalid text");
    if (st == EDGERT_OK && !valid_utf8(text)) finding("edgert_tokenize accepted invalid UTF-8");
    if (!check_status("edgert_tokenize", st, allowed)) return false;
    if (n < 0 || size_t(n) > text.size() + 3) finding("%d ids for %zu bytes of text", n, text.size());
    ids->assign(size_t(n), -1);
    int32_t n2 = -1;
    std::vector<int32_t> half(size_t(n / 2), -1);
    check_status("edgert_tokenize", edgert_tokenize(m, text.data(), text.size(), flags, half.data(),
                                                    int32_t(half.size()), &n2), {});
    if (n2 != n) finding("edgert_tokenize reported %d ids, then %d at a smaller capacity", n, n2);
    check_status("edgert_tokenize", edgert_tokenize(m, text.data(), text.size(), flags, ids->data(), n, &n2), {});
    if (n2 != n || !std::equal(half.begin(), half.end(), ids->begin())) {
        finding("edgert_tokenize gave different ids at different capacities");
    }
    for (int32_t id : *ids) if (!in_vocab(id)) finding("edgert_tokenize returned id %d outside the vocabulary", id);
    return true;
}

// The text of ids, or false after EDGERT_ERR_TOKEN (which must mean an id outside the vocabulary).
bool detokenize(edgert_model* m, const std::vector<int32_t>& ids, int32_t flags, std::string* text,
                std::initializer_list<edgert_status> allowed = {EDGERT_ERR_TOKEN}) {
    const bool all_in = std::all_of(ids.begin(), ids.end(), in_vocab);
    size_t len = 0;
    edgert_status st = edgert_detokenize(m, ids.data(), int32_t(ids.size()), flags, nullptr, 0, &len);
    if ((st == EDGERT_ERR_TOKEN) == all_in) finding("edgert_detokenize: EDGERT_ERR_TOKEN does not match the ids");
    if (!check_status("edgert_detokenize", st, allowed)) return false;
    std::string buf(len + 1, '\x7f');
    size_t len2 = 0;
    st = edgert_detokenize(m, ids.data(), int32_t(ids.size()), flags, &buf[0], buf.size(), &len2);
    check_status("edgert_detokenize", st, {});
    if (len2 != len || buf[len] != '\0') finding("edgert_detokenize's length changed or no NUL");
    text->assign(buf.data(), len);
    if (!valid_utf8(*text)) finding("edgert_detokenize returned invalid UTF-8");
    return true;
}

void pieces(edgert_model* m, const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
        char small[4];
        size_t len = 0;
        const edgert_status st = edgert_token_to_piece(m, id, small, sizeof small, &len);
        if ((st == EDGERT_ERR_TOKEN) == in_vocab(id)) finding("edgert_token_to_piece: EDGERT_ERR_TOKEN for id %d", id);
        if (check_status("edgert_token_to_piece", st, {EDGERT_ERR_TOKEN}) && small[std::min<size_t>(len, 3)] != '\0') {
            finding("edgert_token_to_piece wrote no NUL");
        }
    }
}

// Context ids, then ids fed one by one: every piece valid UTF-8. Returns the joined text (pieces
// and flush), or false when an id was refused.
bool stream(edgert_model* m, const std::vector<int32_t>& context, const std::vector<int32_t>& ids,
            int32_t flags, std::string* joined) {
    edgert_detokenizer* d = nullptr;
    const edgert_status st = edgert_detokenizer_new(m, context.data(), int32_t(context.size()), flags, &d);
    if ((st == EDGERT_ERR_TOKEN) == std::all_of(context.begin(), context.end(), in_vocab)) {
        finding("edgert_detokenizer_new: EDGERT_ERR_TOKEN does not match the context ids");
    }
    if (!check_status("edgert_detokenizer_new", st, {EDGERT_ERR_TOKEN})) return false;
    bool all_in = true;
    for (int32_t id : ids) {
        const char* piece = nullptr;
        size_t len = 0;
        const edgert_status f = edgert_detokenizer_feed(d, id, &piece, &len);
        if ((f == EDGERT_ERR_TOKEN) == in_vocab(id)) finding("edgert_detokenizer_feed: EDGERT_ERR_TOKEN for id %d", id);
        if (!check_status("edgert_detokenizer_feed", f, {EDGERT_ERR_TOKEN})) {
            all_in = false;
            continue;
        }
        const std::string p(piece, len);
        if (piece[len] != '\0') finding("a detokenizer piece is not NUL-terminated");
        if (!valid_utf8(p)) finding("a detokenizer piece is not valid UTF-8 (it split a character)");
        *joined += p;
    }
    const char* tail = nullptr;
    size_t len = 0;
    check_status("edgert_detokenizer_flush", edgert_detokenizer_flush(d, &tail, &len), {});
    const std::string t(tail, len);
    if (!valid_utf8(t)) finding("the detokenizer's flush is not valid UTF-8");
    *joined += t;
    edgert_detokenizer_free(d);
    return all_in;
}

void text_mode(int which, const std::string& text, int32_t flags) {
    edgert_model* m = fixed_model(which);
    std::vector<int32_t> ids;
    if (!tokenize(m, text, flags, &ids, {EDGERT_ERR_INVALID_TEXT})) return;
    const bool add = flags & EDGERT_TOKENIZE_ADD_SPECIAL;
    if (add && (ids.empty() || ids.front() != 1 || (which == 0 && ids.back() != 2))) {
        finding("add_bos/add_eos not applied");
    }
    std::string back, joined;
    detokenize(m, ids, 0, &back, {});
    if (which == 0 && !add && back != text) finding("model A is byte-level: decode(encode(text)) != text");
    pieces(m, ids);
    stream(m, {}, ids, 0, &joined);
    if (joined != back) finding("the detokenizer's pieces joined differ from edgert_detokenize's text");
    if (which == 0 && (flags & EDGERT_TOKENIZE_PARSE_SPECIAL) && text.find("<|end|>") != std::string::npos &&
        std::find(ids.begin(), ids.end(), kEndId) == ids.end()) {
        finding("a special token in the text was not parsed");
    }
}

void ids_mode(const std::string& payload, int32_t flags) {
    std::vector<int32_t> ids(std::min<size_t>(payload.size() / 4, 512));
    if (!ids.empty()) std::memcpy(ids.data(), payload.data(), ids.size() * 4);
    // Mostly ids inside the vocabulary (bit 31 clear), so the decoders run; the rest as given.
    for (int32_t& id : ids) if (id >= 0) id %= kVocab + 4;
    const int32_t dflags = flags & EDGERT_DETOKENIZE_SKIP_SPECIAL;
    for (int which = 0; which < 2; ++which) {
        edgert_model* m = fixed_model(which);
        std::string text, joined;
        detokenize(m, ids, dflags, &text);
        pieces(m, ids);
        const size_t half = ids.size() / 2;
        stream(m, std::vector<int32_t>(ids.begin(), ids.begin() + std::ptrdiff_t(half)),
               std::vector<int32_t>(ids.begin() + std::ptrdiff_t(half), ids.end()), dflags, &joined);
    }
}

void chat_on(edgert_model* m, const std::vector<std::string>& parts, bool add_generation_prompt) {
    const char* tmpl = parts[0].empty() ? nullptr : parts[0].c_str();
    std::vector<edgert_chat_message> msgs;
    bool all_valid = valid_utf8(parts[0]);
    for (size_t i = 1; i + 1 < parts.size(); i += 2) {
        msgs.push_back({parts[i].c_str(), parts[i + 1].c_str()});
        all_valid = all_valid && valid_utf8(parts[i]) && valid_utf8(parts[i + 1]);
    }
    const char* family = edgert_chat_template_family(m, tmpl);
    size_t len = 0;
    const edgert_status st = edgert_chat_format(m, tmpl, msgs.data(), int32_t(msgs.size()),
                                                add_generation_prompt, nullptr, 0, &len);
    if (st == EDGERT_ERR_INVALID_TEXT && all_valid) finding("edgert_chat_format: valid UTF-8 refused");
    if ((st == EDGERT_ERR_UNSUPPORTED) != (family == nullptr) && st != EDGERT_ERR_INVALID_TEXT &&
        st != EDGERT_ERR_INVALID_ARGUMENT) {
        finding("edgert_chat_format says %s but the family is %s", edgert_status_string(st), family ? family : "none");
    }
    if (!check_status("edgert_chat_format", st,
                      {EDGERT_ERR_UNSUPPORTED, EDGERT_ERR_INVALID_ARGUMENT, EDGERT_ERR_INVALID_TEXT})) {
        return;
    }
    std::string out(len + 1, '\x7f');
    size_t len2 = 0;
    check_status("edgert_chat_format", edgert_chat_format(m, tmpl, msgs.data(), int32_t(msgs.size()),
                                                          add_generation_prompt, &out[0], out.size(), &len2), {});
    if (len2 != len || out[len] != '\0') finding("edgert_chat_format's length changed or no NUL");
    out.resize(len);
    if (!valid_utf8(out)) finding("edgert_chat_format returned invalid UTF-8");
    std::vector<int32_t> ids;
    tokenize(m, out, EDGERT_TOKENIZE_PARSE_SPECIAL, &ids, {});
}

void chat_mode(const std::string& payload, int32_t flags) {
    std::vector<std::string> parts;
    size_t a = 0;
    for (size_t b; (b = payload.find('\0', a)) != std::string::npos && parts.size() < 33; a = b + 1) {
        parts.push_back(payload.substr(a, b - a));
    }
    parts.push_back(payload.substr(a));
    chat_on(fixed_model(flags & 1), parts, (flags & 2) != 0);
}

int32_t on_piece(const char* text, size_t len, void* user_data) {
    const std::string p(text, len);
    if (!valid_utf8(p)) finding("edgert_generate_text passed a piece that is not valid UTF-8");
    int* calls = static_cast<int*>(user_data);
    return ++*calls >= 3;
}

void generate_mode(const std::string& payload, int32_t flags) {
    edgert_model* m = fixed_model(0);
    const std::string prompt = payload.substr(0, 256);
    edgert_context_params cp = edgert_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    edgert_context* ctx = nullptr;
    edgert_sampler* smp = nullptr;
    if (edgert_context_new(m, &cp, &ctx) != EDGERT_OK || edgert_sampler_new(nullptr, &smp) != EDGERT_OK) {
        finding("the generate target's context or sampler does not build: %s", edgert_last_error());
    }
    int calls = 0;
    int32_t n = -1;
    const edgert_status st = edgert_generate_text(ctx, smp, prompt.data(), prompt.size(), flags & 3, 4,
                                                  on_piece, &calls, &n);
    if (st == EDGERT_ERR_INVALID_TEXT && valid_utf8(prompt)) finding("edgert_generate_text: valid UTF-8 refused");
    if (check_status("edgert_generate_text", st,
                     {EDGERT_ERR_INVALID_TEXT, EDGERT_ERR_INVALID_ARGUMENT, EDGERT_ERR_CONTEXT_OVERFLOW}) &&
        (n < 0 || n > 4)) {
        finding("edgert_generate_text generated %d tokens of 4", n);
    }
    edgert_sampler_free(smp);
    edgert_context_free(ctx);
}

void tokenizer_json_mode(const std::string& payload, int32_t flags) {
    if (!valid_utf8(payload)) return;  // a JSON string in the metadata holds UTF-8 only
    edgert_model* m = nullptr;
    if (!check_status("edgert_model_load", load_model(payload, kChatml, flags & 1, &m), {EDGERT_ERR_FORMAT})) {
        return;
    }
    // The tokenizer is built on first use: every text function reports the same refusal.
    const std::initializer_list<edgert_status> refusals = {EDGERT_ERR_FORMAT, EDGERT_ERR_UNSUPPORTED,
                                                           EDGERT_ERR_OUT_OF_MEMORY};
    std::vector<int32_t> ids;
    if (tokenize(m, "Hello w\xc3\xb6rld 123 \xf0\x9f\x98\x80 <|end|> <s>\n\n  x", flags & 3, &ids, refusals)) {
        std::string text, joined;
        detokenize(m, ids, 0, &text, {});
        pieces(m, ids);
        stream(m, {}, ids, 0, &joined);
        std::vector<int32_t> some;
        for (int32_t i = 0; i < kVocab; i += 7) some.push_back(i);
        detokenize(m, some, 1, &text, {});
        pieces(m, some);
        chat_on(m, {"", "user", "hi", "assistant", "yo", "user", "ok"}, true);
    } else {
        size_t len = 0;
        const int32_t one = 1;
        if (edgert_detokenize(m, &one, 1, 0, nullptr, 0, &len) == EDGERT_OK) {
            finding("edgert_tokenize refused the tokenizer but edgert_detokenize used it");
        }
    }
    edgert_model_free(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string payload(reinterpret_cast<const char*>(data) + 1, size - 1);
    const int32_t flags = data[0] / 6;
    switch (data[0] % 6) {
        case 0: text_mode(0, payload, flags & 3); break;
        case 1: text_mode(1, payload, flags & 3); break;
        case 2: tokenizer_json_mode(payload, flags); break;
        case 3: ids_mode(payload, flags); break;
        case 4: chat_mode(payload, flags); break;
        default: generate_mode(payload, flags); break;
    }
    return 0;
}
