// tokenizer_api.cpp — edgert_tokenize, edgert_detokenize, edgert_token_to_piece and the
// streaming edgert_detokenizer of the C API (ABI 2), over tokenizer/.
#include <algorithm>
#include <cstring>

#include "api/api_guard.h"
#include "api/handles.h"

namespace edgert {

const Tokenizer& model_tokenizer(const edgert_model& model) {
    std::call_once(model.tokenizer_once, [&] {
        const ModelMetadata& meta = model.impl->meta;
        TokenizerConfig cfg;
        cfg.bos_id = meta.bos_token_id;
        cfg.eos_ids = meta.eos_token_ids;
        cfg.add_bos = meta.add_bos;
        cfg.add_eos = meta.add_eos;
        cfg.vocab_size = meta.hparams.vocab_size;
        try {
            model.tokenizer = std::make_unique<Tokenizer>(meta.tokenizer_json, cfg);
        } catch (const StatusError& e) {
            model.tokenizer_status = e.status();
            model.tokenizer_error = e.what();
        } catch (const std::bad_alloc&) {
            model.tokenizer_status = EDGERT_ERR_OUT_OF_MEMORY;
            model.tokenizer_error = "out of memory building the tokenizer";
        }
    });
    if (!model.tokenizer) fail(model.tokenizer_status, model.tokenizer_error);
    return *model.tokenizer;
}

namespace {

void check_token(const edgert_model& model, int32_t token) {
    const int32_t vocab = model.impl->meta.hparams.vocab_size;
    if (token < 0 || token >= vocab) {
        fail(EDGERT_ERR_TOKEN, "token id " + std::to_string(token) + " is outside [0, " +
                                   std::to_string(vocab) + ")");
    }
}

void copy_text(const std::string& s, char* out, size_t capacity, size_t* out_len) {
    if (capacity > 0) {
        const size_t n = std::min(capacity - 1, s.size());
        std::memcpy(out, s.data(), n);
        out[n] = '\0';
    }
    *out_len = s.size();
}

}  // namespace
}  // namespace edgert

extern "C" {

EDGERT_API edgert_status edgert_tokenize(const edgert_model* model, const char* text, size_t text_len,
                                         int32_t flags, int32_t* tokens, int32_t capacity,
                                         int32_t* n_tokens) {
    return edgert::api_call("edgert_tokenize", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(n_tokens, "n_tokens");
        if (!text && text_len > 0) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "text is NULL");
        if (capacity < 0 || (capacity > 0 && !tokens)) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "tokens is NULL or capacity < 0");
        }
        if ((flags & ~(EDGERT_TOKENIZE_ADD_SPECIAL | EDGERT_TOKENIZE_PARSE_SPECIAL)) != 0) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "unknown bits in flags");
        }
        if (text_len > size_t(INT32_MAX) - 8) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "text is too long");
        const edgert::Tokenizer& tok = edgert::model_tokenizer(*model);
        const std::vector<int32_t> ids =
            tok.encode(std::string_view(text ? text : "", text_len), (flags & EDGERT_TOKENIZE_ADD_SPECIAL) != 0,
                       (flags & EDGERT_TOKENIZE_PARSE_SPECIAL) != 0);
        const size_t n = std::min(ids.size(), size_t(capacity));
        if (n) std::memcpy(tokens, ids.data(), n * sizeof(int32_t));
        *n_tokens = int32_t(ids.size());
    });
}

EDGERT_API edgert_status edgert_detokenize(const edgert_model* model, const int32_t* tokens,
                                           int32_t n_tokens, int32_t flags, char* text,
                                           size_t capacity, size_t* text_len) {
    return edgert::api_call("edgert_detokenize", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(text_len, "text_len");
        if (n_tokens < 0 || (n_tokens > 0 && !tokens)) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "tokens is NULL or n_tokens < 0");
        }
        if (capacity > 0 && !text) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "text is NULL");
        if ((flags & ~EDGERT_DETOKENIZE_SKIP_SPECIAL) != 0) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "unknown bits in flags");
        }
        for (int32_t i = 0; i < n_tokens; ++i) edgert::check_token(*model, tokens[i]);
        const edgert::Tokenizer& tok = edgert::model_tokenizer(*model);
        edgert::copy_text(tok.decode(tokens, size_t(n_tokens), (flags & EDGERT_DETOKENIZE_SKIP_SPECIAL) != 0),
                          text, capacity, text_len);
    });
}

EDGERT_API edgert_status edgert_token_to_piece(const edgert_model* model, int32_t token, char* piece,
                                               size_t capacity, size_t* piece_len) {
    return edgert::api_call("edgert_token_to_piece", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(piece_len, "piece_len");
        if (capacity > 0 && !piece) edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "piece is NULL");
        edgert::check_token(*model, token);
        edgert::copy_text(edgert::model_tokenizer(*model).piece(token), piece, capacity, piece_len);
    });
}

EDGERT_API int32_t edgert_token_is_eog(const edgert_model* model, int32_t token) {
    if (!model) return 0;
    const auto& eos = model->impl->meta.eos_token_ids;
    return std::find(eos.begin(), eos.end(), token) != eos.end() ? 1 : 0;
}

EDGERT_API edgert_status edgert_detokenizer_new(const edgert_model* model, const int32_t* context,
                                                int32_t n_context, int32_t flags,
                                                edgert_detokenizer** out) {
    return edgert::api_call("edgert_detokenizer_new", [&] {
        edgert::require_non_null(model, "model");
        edgert::require_non_null(out, "out");
        if (n_context < 0 || (n_context > 0 && !context)) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "context is NULL or n_context < 0");
        }
        if ((flags & ~EDGERT_DETOKENIZE_SKIP_SPECIAL) != 0) {
            edgert::fail(EDGERT_ERR_INVALID_ARGUMENT, "unknown bits in flags");
        }
        for (int32_t i = 0; i < n_context; ++i) edgert::check_token(*model, context[i]);
        const edgert::Tokenizer& tok = edgert::model_tokenizer(*model);
        auto d = std::make_unique<edgert_detokenizer>();
        d->model = model;
        d->stream = std::make_unique<edgert::DecodeStream>(tok, context, size_t(n_context),
                                                           (flags & EDGERT_DETOKENIZE_SKIP_SPECIAL) != 0);
        *out = d.release();
    });
}

EDGERT_API void edgert_detokenizer_free(edgert_detokenizer* detok) { delete detok; }

EDGERT_API edgert_status edgert_detokenizer_feed(edgert_detokenizer* detok, int32_t token,
                                                 const char** text, size_t* text_len) {
    return edgert::api_call("edgert_detokenizer_feed", [&] {
        edgert::require_non_null(detok, "detok");
        edgert::require_non_null(text, "text");
        edgert::require_non_null(text_len, "text_len");
        edgert::check_token(*detok->model, token);
        detok->text = detok->stream->step(token);
        *text = detok->text.c_str();
        *text_len = detok->text.size();
    });
}

EDGERT_API edgert_status edgert_detokenizer_flush(edgert_detokenizer* detok, const char** text,
                                                  size_t* text_len) {
    return edgert::api_call("edgert_detokenizer_flush", [&] {
        edgert::require_non_null(detok, "detok");
        edgert::require_non_null(text, "text");
        edgert::require_non_null(text_len, "text_len");
        detok->text = detok->stream->flush();
        *text = detok->text.c_str();
        *text_len = detok->text.size();
    });
}

}  // extern "C"
