// mapped_file.cpp — POSIX mmap of a model file, read-only and private.
#include "core/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/message_text.h"
#include "core/status_error.h"

namespace edgert {

void MappedFile::drop_pages(const void* begin, uint64_t n) const {
    if (!mapped_ || n == 0) return;
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const auto lo = reinterpret_cast<uintptr_t>(begin);
    const uintptr_t first = (lo + page - 1) / page * page;
    const uintptr_t last = (lo + n) / page * page;
    if (last <= first) return;
    // Advice only: a failure leaves the pages resident, which costs memory but not correctness.
    madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace edgert

namespace edgert {

MappedFile MappedFile::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fail(EDGERT_ERR_IO, "cannot open " + quote_bytes(path) + ": " + std::strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        ::close(fd);
        fail(EDGERT_ERR_IO, quote_bytes(path) + " is not a readable regular file" +
                                (err ? std::string(": ") + std::strerror(err) : std::string()));
    }
    MappedFile f;
    f.size_ = uint64_t(st.st_size);
    if (f.size_ == 0) {
        // mmap refuses length 0; an empty file is simply a truncated model, reported by the parser.
        ::close(fd);
        return f;
    }
    void* p = mmap(nullptr, size_t(f.size_), PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);  // the mapping keeps the file alive
    if (p == MAP_FAILED) {
        fail(EDGERT_ERR_IO, "cannot map " + quote_bytes(path) + ": " + std::strerror(err));
    }
    f.data_ = static_cast<const uint8_t*>(p);
    f.mapped_ = true;
    return f;
}

MappedFile MappedFile::from_bytes(std::vector<uint8_t> bytes) {
    MappedFile f;
    f.bytes_ = std::move(bytes);
    f.data_ = f.bytes_.data();
    f.size_ = f.bytes_.size();
    return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        release();
        mapped_ = other.mapped_;
        size_ = other.size_;
        bytes_ = std::move(other.bytes_);
        data_ = mapped_ ? other.data_ : bytes_.data();
        other.data_ = nullptr;
        other.size_ = 0;
        other.mapped_ = false;
    }
    return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
    if (mapped_ && data_) munmap(const_cast<uint8_t*>(data_), size_t(size_));
    data_ = nullptr;
    size_ = 0;
    mapped_ = false;
    bytes_.clear();
}

}  // namespace edgert
