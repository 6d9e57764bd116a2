// weight_layout.cpp — prepare_weight: attaches the active ISA's re-layout of a weight, if that ISA
// has one for the type. The canonical bytes stay untouched (they are the mmapped file); the packed
// copy is extra memory, owned by the Weight: as much again as the quantized weights (plus row
// padding to 16), unless the loader releases the file pages it no longer needs (matmul never
// reads w.data of a packed weight; row_to_float still does).
//
// EDGERT_REPACK=0 turns the re-layout off (memory-tight devices; A/B measurements); the
// canonical-layout kernels then run, slower but on the mapped file alone.
#include <cstdlib>
#include <cstring>

#include "kernels/kernel_table.h"
#include "kernels/kernels.h"

namespace edgert {

void prepare_weight(Weight& w) {
    const KernelTable& k = active_kernels();
    if (w.packed != nullptr && w.packed_isa == k.name) return;
    w.packed.reset();
    w.packed_isa.clear();
    w.packed_bytes = 0;
    static const bool repack = [] {
        const char* env = std::getenv("EDGERT_REPACK");
        return env == nullptr || std::strcmp(env, "0") != 0;
    }();
    if (!repack) return;
    const size_t bytes = k.packed_bytes(w.type, w.rows, w.cols);
    if (bytes == 0) return;
    // 64-byte alignment: a packed group is read with full-width aligned-size loads.
    void* buf = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (buf == nullptr) return;  // fall back to the canonical layout rather than fail the load
    k.pack_weight(w.type, w.data, w.rows, w.cols, buf);
    w.packed = std::shared_ptr<const void>(buf, [](const void* p) { std::free(const_cast<void*>(p)); });
    w.packed_isa = k.name;
    w.packed_bytes = bytes;
}

}  // namespace edgert
