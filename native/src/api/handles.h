// handles.h — what the opaque C handles of edgert.h wrap.
#pragma once
#include <memory>

#include "models/model.h"
#include "runtime/context.h"
#include "runtime/sampler.h"

struct edgert_model {
    std::unique_ptr<edgert::Model> impl;
};

struct edgert_context {
    std::unique_ptr<edgert::Context> impl;
};

struct edgert_sampler {
    std::unique_ptr<edgert::Sampler> impl;
};
