// api_guard.h — the C API boundary: the thread-local last error and the wrapper that turns
// every C++ exception into an edgert_status, so none ever crosses into C.
#pragma once
#include <new>
#include <stdexcept>
#include <string>

#include "core/status_error.h"
#include "edgert.h"

namespace edgert {

void set_last_error(const std::string& message);

// Runs body() (which returns nothing and throws on failure); returns EDGERT_OK or the status of
// the failure, with the message recorded for edgert_last_error().
template <class Body>
edgert_status api_call(const char* function, Body&& body) noexcept {
    try {
        body();
        return EDGERT_OK;
    } catch (const StatusError& e) {
        set_last_error(std::string(function) + ": " + e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error(std::string(function) + ": out of memory");
        return EDGERT_ERR_OUT_OF_MEMORY;
    } catch (const std::length_error&) {
        set_last_error(std::string(function) + ": out of memory (allocation too large)");
        return EDGERT_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_last_error(std::string(function) + ": internal error: " + e.what());
        return EDGERT_ERR_INTERNAL;
    } catch (...) {
        set_last_error(std::string(function) + ": internal error");
        return EDGERT_ERR_INTERNAL;
    }
}

template <class T>
void require_non_null(const T* p, const char* name) {
    if (!p) fail(EDGERT_ERR_INVALID_ARGUMENT, std::string(name) + " is NULL");
}

}  // namespace edgert
