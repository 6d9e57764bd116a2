// status_error.h — the one exception type inside the runtime.
//
// Core code throws StatusError with the edgert_status the C API must return and a message for
// edgert_last_error(); the C API boundary (api/) catches it, so no exception ever crosses into C.
#pragma once
#include <stdexcept>
#include <string>

#include "edgert.h"

namespace edgert {

class StatusError : public std::runtime_error {
public:
    StatusError(edgert_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    edgert_status status() const { return status_; }

private:
    edgert_status status_;
};

[[noreturn]] inline void fail(edgert_status status, const std::string& message) {
    throw StatusError(status, message);
}

}  // namespace edgert
