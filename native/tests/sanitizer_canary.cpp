// sanitizer_canary.cpp — one deliberate bug per sanitizer, so tests/test_native.py can check that
// a sanitized build really fails on a report (a UBSan build without -fno-sanitize-recover prints
// and exits 0; a GCC build without float-cast-overflow does not even print). Not a ctest test.
//   sanitizer_canary int-overflow | float-cast | heap-overflow | data-race
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace {

// volatile: the compiler may not fold the bug away at compile time.
volatile int g_big = 2147483647;
volatile float g_nan = __builtin_nanf("");
int g_shared = 0;

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s int-overflow|float-cast|heap-overflow|data-race\n", argv[0]);
        return 2;
    }
    const char* what = argv[1];
    if (std::strcmp(what, "int-overflow") == 0) {
        const int x = g_big;
        std::printf("%d\n", x + 1);
    } else if (std::strcmp(what, "float-cast") == 0) {
        const float f = g_nan;
        std::printf("%d\n", static_cast<int>(f));
    } else if (std::strcmp(what, "heap-overflow") == 0) {
        char* p = static_cast<char*>(std::malloc(8));
        volatile int i = 8;
        p[i] = 1;
        std::free(p);
    } else if (std::strcmp(what, "data-race") == 0) {
        std::thread t([] { for (int i = 0; i < 100000; ++i) ++g_shared; });
        for (int i = 0; i < 100000; ++i) ++g_shared;
        t.join();
        std::printf("%d\n", g_shared);
    } else {
        return 2;
    }
    return 0;
}
