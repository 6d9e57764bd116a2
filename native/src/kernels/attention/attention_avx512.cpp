// attention_avx512.cpp — AVX-512 (F, BW, VL, DQ + VNNI) position loop, f32 weighted V sum; scalar
// twin: attention_scalar.cpp. The kernels live in attention_avx512_ops.h, shared with the
// AVX512_BF16 variant (attention_avx512_bf16.cpp). Quantized keys take VPDPBUSD (u8 codes x s8
// query); the codes need no re-centring because the zero point is applied through qsum.
// Handles head_dim % 16 == 0; anything else goes to the scalar loop.
// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsic headers as
// maybe-uninitialized (GCC bug 105593); nothing in this file reads an uninitialized value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <math.h>

#include <cstring>

#include "kernels/attention/attention_pass.h"
#include "kernels/attention/kv_row_format.h"

namespace edgert {
namespace attn {
namespace {

#include "kernels/attention/attention_avx512_ops.h"
#include "kernels/attention/attention_tiled.h"

}  // namespace

void attention_pass_avx512(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos) {
    if (p.head_dim % 16 != 0) return attention_pass_scalar(a, p, first, n_pos);
    run_tiled_pass<Ops>(a, p, first, n_pos);
}

}  // namespace attn
}  // namespace edgert
