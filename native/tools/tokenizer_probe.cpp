// tokenizer_probe.cpp — drives tokenizer/ directly (no model file) for the parity tests and for
// profiling; tests/test_native_tokenizer.py builds it with the host compiler and, for aarch64,
// with the cross compiler under qemu.
//   tokenizer_probe encode TOKENIZER.json RECORDS   ids of each NUL-separated record, one line
//                                                   each ("E<status>" for a refused record)
//   tokenizer_probe time TOKENIZER.json TEXT N      median ms of N encodes of the whole file
//   tokenizer_probe classes                         "cp flags" for every code point with flags
//   tokenizer_probe nfc RECORDS                     NFC of each record, NUL-separated
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/status_error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_props.h"

namespace {

std::string read_all(const char* path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// No model here to give the vocabulary size that bounds tokenizer.json's JSON values; a test
// tool reads only real tokenizers, and 2^20 tokens is above every one of them.
edgert::TokenizerConfig probe_config() {
    edgert::TokenizerConfig cfg;
    cfg.vocab_size = 1 << 20;
    return cfg;
}

std::vector<std::string> records(const std::string& text) {
    std::vector<std::string> out;
    size_t a = 0;
    while (a <= text.size()) {
        size_t b = text.find('\0', a);
        if (b == std::string::npos) b = text.size();
        out.push_back(text.substr(a, b - a));
        a = b + 1;
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    try {
        if (cmd == "encode" && argc == 4) {
            edgert::Tokenizer tok(read_all(argv[2]), probe_config());
            std::string line;
            for (const std::string& r : records(read_all(argv[3]))) {
                line.clear();
                try {
                    for (int32_t id : tok.encode(r, false, true)) line += std::to_string(id) + " ";
                } catch (const edgert::StatusError& e) {
                    line = "E" + std::to_string(int(e.status()));
                }
                line += '\n';
                std::fwrite(line.data(), 1, line.size(), stdout);
            }
            return 0;
        }
        if (cmd == "time" && argc == 5) {
            edgert::Tokenizer tok(read_all(argv[2]), probe_config());
            const std::string text = read_all(argv[3]);
            std::vector<double> ms;
            size_t n = 0;
            for (int r = 0; r < std::max(1, std::atoi(argv[4])); ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                n = tok.encode(text, false, true).size();
                ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
            std::sort(ms.begin(), ms.end());
            std::printf("%zu tokens %.3f ms\n", n, ms[ms.size() / 2]);
            return 0;
        }
        if (cmd == "classes") {
            for (uint32_t cp = 0; cp < 0x110000; ++cp) {
                const unsigned f = edgert::unicode::flags(cp) & 7;
                if (f) std::printf("%u %u\n", cp, f);
            }
            return 0;
        }
        if (cmd == "nfc" && argc == 3) {
            bool first = true;
            for (const std::string& r : records(read_all(argv[2]))) {
                if (!first) std::fputc('\0', stdout);
                first = false;
                const std::string n = edgert::unicode::nfc(r);
                std::fwrite(n.data(), 1, n.size(), stdout);
            }
            return 0;
        }
    } catch (const edgert::StatusError& e) {
        std::fprintf(stderr, "status %d: %s\n", int(e.status()), e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: %s encode|time|classes|nfc ...\n", argv[0]);
    return 2;
}
