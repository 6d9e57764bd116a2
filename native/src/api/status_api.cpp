// status_api.cpp — status names, last error, versions and ISA selection of the C API.
#include <cstring>
#include <string>

#include "api/api_guard.h"
#include "core/message_text.h"
#include "kernels/kernels.h"

namespace edgert {
namespace {
thread_local std::string g_last_error;
}  // namespace

void set_last_error(const std::string& message) {
    try {
        // Messages quote file bytes through quote_bytes() where they are built; this is the net
        // for any that did not: edgert_last_error() is always valid UTF-8, so the Python binding
        // (py::str) and the JNI bridge (NewStringUTF) can take it as it is.
        g_last_error = escape_invalid_utf8(message);
    } catch (...) {
        g_last_error.clear();  // out of memory while reporting: an empty message beats a crash
    }
}

}  // namespace edgert

extern "C" {

EDGERT_API const char* edgert_status_string(edgert_status status) {
    // A C caller may pass any int. In C++ an edgert_status outside its enumerators' range
    // (0..15) cannot be read as the enum without undefined behaviour (clang's -fsanitize=enum
    // reports it), so the bytes are read as the int they are.
    static_assert(sizeof(edgert_status) == sizeof(int), "edgert_status is an int-sized enum");
    int code;
    std::memcpy(&code, &status, sizeof code);
    switch (code) {
        case EDGERT_OK: return "EDGERT_OK";
        case EDGERT_ERR_INVALID_ARGUMENT: return "EDGERT_ERR_INVALID_ARGUMENT";
        case EDGERT_ERR_IO: return "EDGERT_ERR_IO";
        case EDGERT_ERR_FORMAT: return "EDGERT_ERR_FORMAT";
        case EDGERT_ERR_VERSION: return "EDGERT_ERR_VERSION";
        case EDGERT_ERR_UNSUPPORTED: return "EDGERT_ERR_UNSUPPORTED";
        case EDGERT_ERR_TOKEN: return "EDGERT_ERR_TOKEN";
        case EDGERT_ERR_CONTEXT_OVERFLOW: return "EDGERT_ERR_CONTEXT_OVERFLOW";
        case EDGERT_ERR_OUT_OF_MEMORY: return "EDGERT_ERR_OUT_OF_MEMORY";
        case EDGERT_ERR_INTERNAL: return "EDGERT_ERR_INTERNAL";
    }
    return "EDGERT_ERR_UNKNOWN";
}

EDGERT_API const char* edgert_last_error(void) { return edgert::g_last_error.c_str(); }

EDGERT_API int32_t edgert_abi_version(void) { return EDGERT_ABI_VERSION; }

EDGERT_API const char* edgert_version(void) { return EDGERT_VERSION_STRING; }

EDGERT_API const char* edgert_isa(void) { return edgert::current_isa(); }

EDGERT_API const char* edgert_available_isas(void) {
    // Built once: the set of ISAs is fixed for the life of the process.
    static const std::string list = [] {
        std::string s;
        try {
            for (const auto& name : edgert::available_isas()) s += (s.empty() ? "" : ",") + name;
        } catch (...) {
        }
        return s;
    }();
    return list.c_str();
}

EDGERT_API edgert_status edgert_set_isa(const char* name) {
    return edgert::api_call("edgert_set_isa", [&] {
        edgert::require_non_null(name, "name");
        if (!edgert::set_isa(name)) {
            edgert::fail(EDGERT_ERR_UNSUPPORTED, std::string("ISA '") + name +
                                                     "' is not available on this CPU or build; "
                                                     "available: " + edgert_available_isas());
        }
    });
}

}  // extern "C"
