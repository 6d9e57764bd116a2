// handles.h — what the opaque C handles of edgert.h wrap.
#pragma once
#include <memory>
#include <mutex>
#include <string>

#include "models/model.h"
#include "runtime/context.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

struct edgert_model {
    std::unique_ptr<edgert::Model> impl;

    // The native tokenizer, built on first use (so a file whose tokenizer.json the native code
    // cannot read still loads and runs on token ids). call_once makes the first use from several
    // threads safe; a failure is kept and reported again on every use.
    mutable std::once_flag tokenizer_once;
    mutable std::unique_ptr<edgert::Tokenizer> tokenizer;
    mutable edgert_status tokenizer_status = EDGERT_OK;
    mutable std::string tokenizer_error;
};

struct edgert_context {
    std::unique_ptr<edgert::Context> impl;
    const edgert_model* model = nullptr;  // the handle it was made from (its tokenizer)
};

struct edgert_sampler {
    std::unique_ptr<edgert::Sampler> impl;
};

struct edgert_detokenizer {
    const edgert_model* model;
    std::unique_ptr<edgert::DecodeStream> stream;
    std::string text;  // what the last feed/flush returned; valid until the next call
};

namespace edgert {
// The model's tokenizer; throws StatusError (EDGERT_ERR_UNSUPPORTED / EDGERT_ERR_FORMAT) when it
// cannot be built. Defined in tokenizer_api.cpp.
const Tokenizer& model_tokenizer(const edgert_model& model);
}  // namespace edgert
