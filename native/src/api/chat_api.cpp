// chat_api.cpp — edgert_chat_format of the C API (ABI 2), over chat/.
#include <algorithm>
#include <cstring>
#include <vector>

#include "api/api_guard.h"
#include "api/handles.h"
#include "chat/chat_format.h"
#include "core/utf8.h"

extern "C" {

EDGERT_API edgert_status edgert_chat_format(const edgert_model* model, const char* chat_template,
                                            const edgert_chat_message* messages, int32_t n_messages,
                                            int32_t add_generation_prompt, char* text,
                                            size_t capacity, size_t* text_len) {
    return edgert::api_call("edgert_chat_format", [&] {
        using edgert::fail;
        edgert::require_non_null(model, "model");
        edgert::require_non_null(text_len, "text_len");
        if (n_messages < 0 || (n_messages > 0 && !messages)) {
            fail(EDGERT_ERR_INVALID_ARGUMENT, "messages is NULL or n_messages < 0");
        }
        if (capacity > 0 && !text) fail(EDGERT_ERR_INVALID_ARGUMENT, "text is NULL");
        const edgert::ModelMetadata& meta = model->impl->meta;
        if (!chat_template && meta.chat_template_not_text) {
            fail(EDGERT_ERR_FORMAT, "this model file's chat_template is not text; pass a template, or "
                                    "re-convert the model");
        }
        if (!chat_template && !meta.has_chat_template) {
            fail(EDGERT_ERR_UNSUPPORTED, "this model file has no chat template; pass one, or format "
                                         "the prompt yourself");
        }
        if (chat_template) {  // the model's own template came through the JSON parser: UTF-8
            const size_t n = std::strlen(chat_template);
            const size_t bad = edgert::utf8::first_invalid(reinterpret_cast<const unsigned char*>(chat_template), n);
            if (bad != n) {
                fail(EDGERT_ERR_INVALID_TEXT, "chat_template is not valid UTF-8 (byte " + std::to_string(bad) + ")");
            }
        }
        std::vector<edgert::ChatMessage> msgs;
        msgs.reserve(size_t(n_messages));
        for (int32_t i = 0; i < n_messages; ++i) {
            const edgert_chat_message& m = messages[i];
            if (!m.role || !m.content) {
                fail(EDGERT_ERR_INVALID_ARGUMENT, "message " + std::to_string(i) + " has a NULL role or content");
            }
            edgert::ChatMessage cm{m.role, m.content};
            for (const std::string* s : {&cm.role, &cm.content}) {
                const size_t bad = edgert::utf8::first_invalid(
                    reinterpret_cast<const unsigned char*>(s->data()), s->size());
                if (bad != s->size()) {
                    fail(EDGERT_ERR_INVALID_TEXT, "message " + std::to_string(i) +
                                                      " is not valid UTF-8 (byte " + std::to_string(bad) + ")");
                }
            }
            msgs.push_back(std::move(cm));
        }
        const edgert::Tokenizer& tok = edgert::model_tokenizer(*model);
        const std::string bos = meta.bos_token_id >= 0 ? tok.token_text(meta.bos_token_id) : "";
        const std::string eos = meta.eos_token_ids.empty() ? "" : tok.token_text(meta.eos_token_ids[0]);
        const std::string out = edgert::format_chat(chat_template ? std::string_view(chat_template)
                                                                  : std::string_view(meta.chat_template),
                                                    msgs, add_generation_prompt != 0, bos, eos);
        if (capacity > 0) {
            const size_t n = std::min(capacity - 1, out.size());
            std::memcpy(text, out.data(), n);
            text[n] = '\0';
        }
        *text_len = out.size();
    });
}

EDGERT_API const char* edgert_chat_template_family(const edgert_model* model, const char* chat_template) {
    try {
        if (!chat_template) {
            if (!model || !model->impl->meta.has_chat_template) return nullptr;
            chat_template = model->impl->meta.chat_template.c_str();
        }
        return edgert::chat_family_name(edgert::detect_chat_family(chat_template));
    } catch (...) {
        return nullptr;
    }
}

}  // extern "C"
