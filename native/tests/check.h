// check.h — the assertion macros of the native tests: a failed check prints where and why and
// makes the test executable exit nonzero (ctest's failure signal), without stopping at the first.
#pragma once
#include <cstdio>
#include <cstdlib>

#include "edgert.h"

namespace edgert_test {
inline int& failures() {
    static int n = 0;
    return n;
}
inline int finish(const char* name) {
    if (failures()) {
        std::fprintf(stderr, "%s: %d check(s) FAILED\n", name, failures());
        return 1;
    }
    std::printf("%s: all checks passed\n", name);
    return 0;
}
}  // namespace edgert_test

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            ++edgert_test::failures();                                           \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                   \
            std::fprintf(stderr, "\n");                                          \
            ++edgert_test::failures();                                           \
        }                                                                        \
    } while (0)

// Compares statuses and shows both names and the runtime's message on mismatch.
#define CHECK_STATUS(expr, expected)                                             \
    do {                                                                         \
        edgert_status st_ = (expr);                                              \
        if (st_ != (expected)) {                                                 \
            std::fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                         #expr, edgert_status_string(st_), edgert_status_string(expected), \
                         edgert_last_error());                                   \
            ++edgert_test::failures();                                           \
        }                                                                        \
    } while (0)
