// chat_format.cpp — see chat_format.h. Each family function is the template's own output
// spelled in C++; `trim` is jinja2's trim filter / Python's str.strip() (white space at both ends).
#include "chat/chat_format.h"

#include "core/status_error.h"

namespace edgert {
namespace {

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

std::string trim(const std::string& s) {
    // Python's str.strip(): ASCII white space and the Unicode White_Space characters; the ASCII
    // ones cover what chat messages carry in practice, the rest is stripped too for U+00A0 etc.
    const auto is_space = [](const std::string& t, size_t i, size_t* len) {
        const unsigned char c = static_cast<unsigned char>(t[i]);
        if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return *len = 1, true;
        static const char* const wide[] = {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\x80",
            "\xE2\x80\x81", "\xE2\x80\x82", "\xE2\x80\x83", "\xE2\x80\x84", "\xE2\x80\x85",
            "\xE2\x80\x86", "\xE2\x80\x87", "\xE2\x80\x88", "\xE2\x80\x89", "\xE2\x80\x8A",
            "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF", "\xE2\x81\x9F", "\xE3\x80\x80"};
        for (const char* w : wide) {
            const size_t n = std::char_traits<char>::length(w);
            if (t.compare(i, n, w) == 0) return *len = n, true;
        }
        return false;
    };
    size_t b = 0, e = s.size(), len = 0;
    while (b < e && is_space(s, b, &len)) b += len;
    while (e > b) {
        size_t k = e - 1;  // start of the last character
        while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!is_space(s, k, &len) || k + len != e) break;
        e = k;
    }
    return s.substr(b, e - b);
}

[[noreturn]] void reject(const std::string& why) {
    fail(EDGERT_ERR_INVALID_ARGUMENT, "the chat template rejects the messages: " + why);
}

// The templates' `(message['role'] == 'user') != (loop.index0 % 2 == 0)` check; with
// only_user_assistant, their "Only user and assistant roles are supported!" branch too.
void require_alternation(const std::vector<ChatMessage>& m, size_t first, bool only_user_assistant) {
    for (size_t i = first; i < m.size(); ++i) {
        const bool user_expected = (i - first) % 2 == 0;
        if ((m[i].role == "user") != user_expected) {
            reject("conversation roles must alternate user/assistant/user/assistant/...");
        }
        if (only_user_assistant && m[i].role != "user" && m[i].role != "assistant") {
            reject("only user and assistant roles are supported, got '" + m[i].role + "'");
        }
    }
}

// The default system prompt a ChatML template writes when the conversation has none, e.g.
// '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n' in a string
// literal; "" when the template has no such literal.
std::string chatml_default_system(std::string_view t) {
    static constexpr std::string_view kOpen = "<|im_start|>system";
    for (size_t at = t.find(kOpen); at != std::string_view::npos; at = t.find(kOpen, at + 1)) {
        size_t i = at + kOpen.size();
        if (t.compare(i, 2, "\\n") == 0) i += 2;
        else if (i < t.size() && t[i] == '\n') i += 1;
        else continue;
        const size_t end = t.find("<|im_end|>", i);
        if (end == std::string_view::npos) continue;
        std::string_view body = t.substr(i, end - i);
        if (body.empty() || contains(body, "'") || contains(body, "\"") || contains(body, "{") ||
            contains(body, "+")) {
            continue;  // not a literal: this is where the template writes messages[0]['content']
        }
        std::string out;  // undo the Jinja string-literal escapes the literal may hold
        for (size_t k = 0; k < body.size(); ++k) {
            if (body[k] == '\\' && k + 1 < body.size()) {
                const char c = body[++k];
                out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
            } else {
                out += body[k];
            }
        }
        return out;
    }
    return std::string();
}

}  // namespace

ChatFamily detect_chat_family(std::string_view t) {
    if (contains(t, "<|im_start|>")) return ChatFamily::kChatml;
    if (contains(t, "<|start_header_id|>")) {
        if (contains(t, "Cutting Knowledge") || contains(t, "tools")) {
            fail(EDGERT_ERR_UNSUPPORTED, "this Llama 3.1+ chat template (date and tool headers) is "
                                         "not one the native formatter reproduces; format the "
                                         "prompt yourself or use edgert's Python chat()");
        }
        return ChatFamily::kLlama3;
    }
    if (contains(t, "[INST]")) return contains(t, "<<SYS>>") ? ChatFamily::kLlama2 : ChatFamily::kMistral;
    if (contains(t, "<start_of_turn>")) return ChatFamily::kGemma;
    if (contains(t, "<|user|>") && contains(t, "<|end|>")) {
        return contains(t, "add_generation_prompt") ? ChatFamily::kPhi3 : ChatFamily::kPhi3Legacy;
    }
    fail(EDGERT_ERR_UNSUPPORTED, "the model's chat template is not one of the families the native "
                                 "formatter knows (ChatML, Llama 3, Llama 2, Mistral [INST], Gemma, "
                                 "Phi-3); format the prompt yourself or use edgert's Python chat()");
}

const char* chat_family_name(ChatFamily f) {
    switch (f) {
        case ChatFamily::kChatml: return "chatml";
        case ChatFamily::kLlama3: return "llama3";
        case ChatFamily::kLlama2: return "llama2";
        case ChatFamily::kMistral: return "mistral";
        case ChatFamily::kGemma: return "gemma";
        case ChatFamily::kPhi3: return "phi3";
        case ChatFamily::kPhi3Legacy: return "phi3";
    }
    return "?";
}

std::string format_chat(std::string_view t, const std::vector<ChatMessage>& m, bool gen,
                        const std::string& bos, const std::string& eos) {
    const ChatFamily family = detect_chat_family(t);
    const bool uses_bos = contains(t, "bos_token");
    std::string out;
    switch (family) {
        case ChatFamily::kChatml: {
            const std::string dflt = chatml_default_system(t);
            if (!dflt.empty() && !m.empty() && m[0].role != "system") {
                out += "<|im_start|>system\n" + dflt + "<|im_end|>\n";
            }
            for (const ChatMessage& x : m) out += "<|im_start|>" + x.role + "\n" + x.content + "<|im_end|>\n";
            if (gen) out += "<|im_start|>assistant\n";
            break;
        }
        case ChatFamily::kLlama3:
            for (size_t i = 0; i < m.size(); ++i) {
                if (i == 0 && uses_bos) out += bos;
                out += "<|start_header_id|>" + m[i].role + "<|end_header_id|>\n\n" + trim(m[i].content) + "<|eot_id|>";
            }
            if (gen || !contains(t, "add_generation_prompt")) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            break;
        case ChatFamily::kLlama2: {
            size_t first = 0;
            std::string system;
            if (!m.empty() && m[0].role == "system") {
                system = m[0].content;
                first = 1;
            }
            require_alternation(m, first, false);
            for (size_t i = first; i < m.size(); ++i) {
                std::string content = m[i].content;
                if (i == first && first == 1) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
                if (m[i].role == "user") out += (uses_bos ? bos : "") + "[INST] " + trim(content) + " [/INST]";
                else if (m[i].role == "assistant") out += " " + trim(content) + " " + eos;
            }
            break;
        }
        case ChatFamily::kMistral:
            require_alternation(m, 0, true);
            if (uses_bos) out += bos;
            for (const ChatMessage& x : m) {
                if (x.role == "user") out += "[INST] " + x.content + " [/INST]";
                else out += x.content + eos;
            }
            break;
        case ChatFamily::kGemma:
            if (!m.empty() && m[0].role == "system") reject("System role not supported");
            require_alternation(m, 0, false);
            if (uses_bos) out += bos;
            for (const ChatMessage& x : m) {
                out += "<start_of_turn>" + (x.role == "assistant" ? std::string("model") : x.role) + "\n" +
                       trim(x.content) + "<end_of_turn>\n";
            }
            if (gen) out += "<start_of_turn>model\n";
            break;
        case ChatFamily::kPhi3:
            if (uses_bos) out += bos;
            for (const ChatMessage& x : m) {
                if (x.role == "system" && x.content.empty()) continue;
                if (x.role == "system" || x.role == "user" || x.role == "assistant") {
                    out += "<|" + x.role + "|>\n" + x.content + "<|end|>\n";
                }
            }
            out += gen ? "<|assistant|>\n" : eos;
            break;
        case ChatFamily::kPhi3Legacy:
            if (uses_bos) out += bos;
            for (const ChatMessage& x : m) {
                if (x.role == "user") out += "<|user|>\n" + x.content + "<|end|>\n<|assistant|>\n";
                else if (x.role == "assistant") out += x.content + "<|end|>\n";
            }
            break;
    }
    return out;
}

}  // namespace edgert
