// crc32.h — CRC-32 exactly as zlib.crc32 computes it (reflected polynomial 0xEDB88320), because
// the converters write checksums with Python's zlib and the loader must agree bit for bit.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgert {

// Continues a running CRC: crc32_update(crc32_update(0, a), b) == zlib.crc32(a + b).
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);

}  // namespace edgert
