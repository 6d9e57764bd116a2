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

// One decode step of n contexts over the same model at once: token t goes to ctxs[t] at its
// position n_past; logits [n][vocab]. The matmuls run once with n rows (the weights are read
// once for every conversation: what makes a server's parallel slots pay), attention per context.
// Row t is computed with the same operations as ctxs[t]'s own one-token llama_forward, so the
// logits are bit-identical. Scratch and threads are ctxs[0]'s; the caller (Context::eval_batch)
// has checked ids, space, distinct contexts and n <= ctxs[0]'s n_batch.
void llama_forward_batch(Context* const* ctxs, const int32_t* tokens, int n, float* logits);

}  // namespace edgert
