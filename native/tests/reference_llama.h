// reference_llama.h — a plain double-precision Llama forward pass over the float values the test
// writer generated: the oracle for the runtime's forward pass on tiny models (biases, untied
// output, rope_freqs, GQA), written straight from the math, with no KV cache and no batching.
#pragma once
#include <vector>

#include "edgt_writer.h"

namespace edgert_test {

// Logits of every position, [n_tokens][vocab].
std::vector<std::vector<double>> reference_llama_logits(const TinyLlamaSpec& spec,
                                                        EdgtBuilder& model,
                                                        const std::vector<int32_t>& tokens);

}  // namespace edgert_test
