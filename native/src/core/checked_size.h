// checked_size.h — byte counts computed from numbers a file or a caller supplied (hparams, n_ctx,
// n_batch). A product that overflows 64 bits would size a short buffer that the code then
// overruns; here it fails instead, with the EDGERT_ERR_OUT_OF_MEMORY the true size means.
#pragma once
#include <cstdint>
#include <string>

#include "core/status_error.h"

namespace edgert {

[[noreturn]] inline void size_overflow(const char* what) {
    fail(EDGERT_ERR_OUT_OF_MEMORY, std::string(what) + " needs more than 2^64 bytes");
}

inline uint64_t size_mul(uint64_t a, uint64_t b, const char* what) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) size_overflow(what);
    return r;
}

inline uint64_t size_add(uint64_t a, uint64_t b, const char* what) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) size_overflow(what);
    return r;
}

}  // namespace edgert
