// crc32.cpp — table-driven CRC-32 (zlib's), sliced by 4 so verify_checksums over a 100 MB model
// costs a fraction of a second.
#include "core/crc32.h"

#include <array>

namespace edgert {
namespace {

using Tables = std::array<std::array<uint32_t, 256>, 4>;

Tables make_tables() {
    Tables t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
        for (int s = 1; s < 4; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
    return t;
}

const Tables& tables() {
    static const Tables t = make_tables();
    return t;
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const void* data, size_t n) {
    const Tables& t = tables();
    const auto* p = static_cast<const uint8_t*>(data);
    uint32_t c = ~crc;
    while (n >= 4) {
        c ^= uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        c = t[3][c & 0xFF] ^ t[2][(c >> 8) & 0xFF] ^ t[1][(c >> 16) & 0xFF] ^ t[0][c >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) c = t[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

}  // namespace edgert
