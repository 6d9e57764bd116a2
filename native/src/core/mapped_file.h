// mapped_file.h — the bytes of a model file: mmap'ed read-only (POSIX), or an owned buffer for
// tests that build files in memory. Weights point straight into these bytes (zero copy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace edgert {

class MappedFile {
public:
    // Throws StatusError(EDGERT_ERR_IO) if the file cannot be opened, stat'ed or mapped.
    static MappedFile open(const std::string& path);
    static MappedFile from_bytes(std::vector<uint8_t> bytes);

    MappedFile() = default;
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    // Tells the kernel these bytes will not be read soon, so their pages leave this process's
    // resident set (they are re-read from the file if touched again). Used for weights whose
    // re-laid-out copy serves all matmuls, so RSS does not hold both. Only whole pages inside the
    // range are dropped; a no-op for owned buffers, where it would destroy the data.
    void drop_pages(const void* begin, uint64_t n) const;

private:
    void release();

    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    bool mapped_ = false;  // true: munmap on release; false: bytes_ owns the data
    std::vector<uint8_t> bytes_;
};

}  // namespace edgert
