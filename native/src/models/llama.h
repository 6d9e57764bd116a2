// llama.h — the forward pass of every family (models/families.def: Llama, Mistral, Qwen2/3,
// Gemma 2/3, Phi-3): one chunk of tokens through every block, K/V into the context's cache,
// logits out.
#pragma once
#include <cstdint>

namespace edgert {

class Context;

// Runs tokens [0, n_tok) at positions [pos0, pos0 + n_tok); the caller (Context::eval) has
// checked ids and space. logits: null (none wanted); or, if all_logits, [n_tok][vocab]; else
// [vocab] for the last token.
void llama_forward(Context& ctx, const int32_t* tokens, int n_tok, int pos0, float* logits,
                   bool all_logits);

}  // namespace edgert
