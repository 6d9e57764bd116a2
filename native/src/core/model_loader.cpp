// model_loader.cpp — the load sequence; one branch per architecture (v1 has only llama).
#include "core/model_loader.h"

#include "models/llama_weights.h"

namespace edgert {

std::unique_ptr<Model> load_model(MappedFile bytes, bool verify_checksums, bool exact_matmul) {
    auto model = std::make_unique<Model>();
    model->file = EdgtFile::parse(std::move(bytes), verify_checksums);
    model->meta = parse_metadata(model->file->metadata());
    llama_bind_weights(*model, exact_matmul);  // parse_metadata refused every other architecture
    for (const auto& t : model->file->tensors()) {
        model->n_params += t.n_elements;
        model->weights_size += t.size;
    }
    return model;
}

std::unique_ptr<Model> load_model_file(const std::string& path, bool verify_checksums,
                                       bool exact_matmul) {
    return load_model(MappedFile::open(path), verify_checksums, exact_matmul);
}

}  // namespace edgert
