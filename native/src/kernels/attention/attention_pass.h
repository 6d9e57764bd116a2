// attention_pass.h — one pass of the tiled attention kernel (attention-private).
//
// A pass is a block of query rows (query tokens x group heads, at most kMaxRows) that share every
// K/V row read: the GQA group reads each cache row once, and in prefill up to kMaxRows/n_group
// query tokens do too, so a long prompt never builds an n x n score matrix (a pass holds
// rows x kTile scores). The driver (attention_dispatch.cpp, built without ISA flags) prepares the
// queries and scratch and finishes the outputs; an ISA file runs the position loop.
//
// Plain structs and pointers only: ISA files are built with their own -m flags (see the banner
// of kernels/kernel_table.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/attention/kv_attention.h"

namespace edgert {
namespace attn {

constexpr int64_t kTile = 64;     // positions per tile
constexpr int64_t kMaxRows = 64;  // query rows per pass
static_assert(kTile == kKvOffsetBlock, "a tile reads the keys of exactly one offset block");

struct AttnPass {
    int64_t rows = 0;
    int64_t head_dim = 0;
    int64_t limit[kMaxRows];  // row r sees positions [start[r], limit[r])
    int64_t start[kMaxRows];
    // Query rows, already multiplied by the softmax scale and rotated when K rows are rotated.
    const float* qf = nullptr;    // [rows][head_dim], float keys
    const int8_t* qi = nullptr;   // [rows][head_dim], quantized keys: q ~ qd * qi
    float qd[kMaxRows];
    int32_t qsum[kMaxRows];       // sum of qi, for the keys' zero point
    // Online-softmax state: running max m, running sum l and the output accumulator acc (in the
    // rotated basis when V rows are rotated).
    float m[kMaxRows];
    float l[kMaxRows];
    float* acc = nullptr;   // [rows][head_dim]
    // ISA-private scratch for scores() (for example the tile's keys transposed): 64-byte aligned,
    // kTile * head_dim words.
    int32_t* scratch = nullptr;
    // Per-tile scratch.
    float* s = nullptr;     // [rows][kTile] scores, then weights
    float* kf = nullptr;    // [kTile][head_dim] float keys
    uint8_t* ku = nullptr;  // [kTile][head_dim] unpacked key codes
    // V rows of the tile decoded to floats (d * u + m for quantized rows): decoding once per tile
    // is shared by every query row, so the weighted sum needs no per-row zero-point term. A loop
    // that sums in another type keeps its own layout of the decoded tile here (bf16: see
    // attention_avx512_bf16.cpp).
    float* vf = nullptr;    // [kTile][head_dim]
};

// The position loop of one ISA: runs positions [first, n_pos) over the pass (first a multiple of
// kTile at or below every row's start).
using AttentionPassFn = void (*)(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);

void attention_pass_scalar(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);
#if defined(__x86_64__) || defined(_M_X64)
void attention_pass_avx2(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);
void attention_pass_avx512(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);
void attention_pass_avx512_bf16(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);
#endif
#if defined(__aarch64__)
void attention_pass_neon(const AttentionArgs& a, AttnPass& p, int64_t first, int64_t n_pos);
#endif

// The pass function for an ISA name ("scalar", "avx2", "avx512", "avx512bf16", "neon"), or null
// when this build or this CPU lacks it. "avx512" needs AVX-512 VNNI; "avx512bf16" (the weighted V
// sum in bf16 for Q8/Q4 V rows, the f32 "avx512" loop for others) needs AVX512_BF16 as well.
AttentionPassFn attention_pass_for(const char* isa);
// The name of the loop attention() runs: the family of current_isa(), and on AVX-512
// "avx512bf16" where the CPU has it (a bf16 sum for quantized V rows), unless EDGERT_ATTN_BF16=0
// (read once).
const char* attention_isa();
// The whole attention with a given position loop (tests compare every ISA through this).
void attention_with(const AttentionArgs& a, AttentionPassFn fn);

}  // namespace attn
}  // namespace edgert
