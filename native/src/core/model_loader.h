// model_loader.h — from file bytes to a ready Model: container checks (edgt_file), metadata
// (metadata), then the architecture's tensor binding (models/).
#pragma once
#include <memory>
#include <string>

#include "core/mapped_file.h"
#include "models/model.h"

namespace edgert {

// Throws StatusError with the status docs/format.md and edgert.h prescribe.
// exact_matmul: quantized weights take f32 activations (see edgert_model_params).
std::unique_ptr<Model> load_model(MappedFile bytes, bool verify_checksums,
                                  bool exact_matmul = false);
std::unique_ptr<Model> load_model_file(const std::string& path, bool verify_checksums,
                                       bool exact_matmul = false);

}  // namespace edgert
