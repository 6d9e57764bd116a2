// dequant_rows.cpp — the runtime's dequantizer (row_to_float) on blocks from a file, for the Python
// tests that compare it with gguf.quants.dequantize bit for bit (tests/test_native.py on x86,
// tests/test_kernels_arm.py under qemu-aarch64). Not a test by itself: it only converts.
//
//   dequant_rows IN OUT
// IN:  u32 dtype id, u64 rows, u64 cols, then rows * row_bytes(dtype, cols) bytes of blocks
// OUT: rows * cols float32 values (native byte order), or exit 1 with a message
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernels/kernels.h"

int main(int argc, char** argv) {
    using namespace edgert;
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s IN OUT\n", argv[0]);
        return 2;
    }
    std::FILE* in = std::fopen(argv[1], "rb");
    if (!in) {
        std::fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    uint32_t id = 0;
    uint64_t rows = 0, cols = 0;
    if (std::fread(&id, 4, 1, in) != 1 || std::fread(&rows, 8, 1, in) != 1 || std::fread(&cols, 8, 1, in) != 1 ||
        !dtype_is_known(id) || cols % dtype_block_size(DType(id)) != 0 || rows > (1u << 20) || cols > (1u << 20)) {
        std::fprintf(stderr, "bad header\n");
        return 1;
    }
    const DType t = DType(id);
    std::vector<uint8_t> data(dtype_row_bytes(t, int64_t(cols)) * rows);
    if (std::fread(data.data(), 1, data.size(), in) != data.size()) {
        std::fprintf(stderr, "short file\n");
        return 1;
    }
    std::fclose(in);
    std::vector<float> out(rows * cols);
    for (uint64_t r = 0; r < rows; ++r) row_to_float(t, data.data(), int64_t(r), int64_t(cols), out.data() + r * cols);
    std::FILE* o = std::fopen(argv[2], "wb");
    if (!o || std::fwrite(out.data(), 4, out.size(), o) != out.size()) {
        std::fprintf(stderr, "cannot write %s\n", argv[2]);
        return 1;
    }
    std::fclose(o);
    return 0;
}
