// llama_weights.h — binds the tensors of a file of any family (families.def) to a Model and
// checks their presence, dtypes and shapes against the hparams and the family's traits
// (docs/format.md, "Tensors").
#pragma once
#include "models/model.h"

namespace edgert {

// Expects model.file and model.meta set. Throws StatusError(EDGERT_ERR_FORMAT) naming the tensor
// for a missing, unexpected, mistyped or misshapen tensor.
// exact_matmul marks every matrix Weight::exact (f32 activations, no re-layout).
void llama_bind_weights(Model& model, bool exact_matmul = false);

}  // namespace edgert
