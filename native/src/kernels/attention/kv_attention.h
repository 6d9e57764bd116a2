// kv_attention.h — KV-cache row formats and attention that reads them directly.
//
// The cache container (runtime/) stores, per layer and KV head, one row per position; this layer
// defines what a row holds for each KV type and computes attention straight from those rows with
// an online softmax, so no step dequantizes the whole cache to fp32. It is agnostic to how the
// container lays rows out: it only needs a base pointer and a stride per position.
#pragma once
#include <cstddef>
#include <cstdint>

namespace edgert {

// Values equal edgert_kv_type in edgert.h.
enum class KVType : int32_t { F32 = 0, F16 = 1, Q8 = 2, Q4 = 3 };

// "f32", "f16", "q8", "q4" (messages, tests, tools).
const char* kv_type_label(KVType t);

// Bytes of one row (one position, one KV head) of head_dim values.
size_t kv_row_bytes(KVType t, int64_t head_dim);
// Largest head_dim a row holds (per-call scratch is sized for it).
constexpr int64_t kKvMaxHeadDim = 256;
// Whether rows of this type can hold head_dim values (the quantized types rotate the head vector
// with a Hadamard transform, so they need a power of two from 32 up).
bool kv_head_dim_supported(KVType t, int64_t head_dim);

// Q4 keys carry one offset vector per block of kKvOffsetBlock positions: the block's mean key
// (rotated basis, f16), subtracted before quantizing and added back through q . offset. Keys
// share a large per-channel mean that a per-row scale cannot absorb; taking it out first halves
// int4 K's perplexity cost (README.md in this folder). Other types have no offsets.
constexpr int64_t kKvOffsetBlock = 64;
// A block whose first write brings fewer rows than this takes another offset (the runtime: the
// previous block's mean, or zero for block 0): the mean of a few rows is noise, and one outlier
// key among them would become every row's outlier.
constexpr int64_t kKvMinOffsetRows = 16;
bool kv_has_block_offset(KVType t, bool is_key);
// Extra bytes per position the offsets cost (averaged over a block), for memory accounting.
size_t kv_offset_bytes_per_row(KVType t, bool is_key, int64_t head_dim);
// The offset of a block whose keys are n_rows vectors of head_dim floats (rows src_stride floats
// apart, original basis): their mean, rotated, rounded to f16.
void kv_block_offset(const float* src, int64_t src_stride, int64_t n_rows, int64_t head_dim,
                     uint16_t* offset);
// A key as the cache's exact sink row holds it: rotated, rounded to f16 (AttentionArgs::k_sink).
void kv_sink_row(const float* src, int64_t head_dim, uint16_t* out);

// Encodes n_rows vectors of head_dim floats (src rows src_stride floats apart) into cache rows
// (dst rows dst_stride bytes apart). `is_key` lets a type treat K and V differently (for example a
// rotation applied to K only). `offset` (f16, head_dim values, or null for zero) is the block
// offset of these rows when kv_has_block_offset(t, is_key); every row must lie in that block.
void kv_store_rows(KVType t, bool is_key, const float* src, int64_t src_stride, int64_t n_rows,
                   int64_t head_dim, void* dst, size_t dst_stride,
                   const uint16_t* offset = nullptr);
// Decodes one row back to floats (tests, debugging, save/load checks); `offset` as above.
void kv_load_row(KVType t, bool is_key, const void* row, int64_t head_dim, float* out,
                 const uint16_t* offset = nullptr);

// Attention of one KV head and the group of query heads that share it (GQA without copying K/V).
// Query token t (0 <= t < n_tokens) sits at position pos0 + t and sees positions [0, pos0 + t],
// or with a sliding window W the last W of them, [pos0 + t - W + 1, pos0 + t].
// q for token t, group head g: q + t * q_token_stride + g * head_dim   (floats)
// out likewise with out_token_stride. K row of position p: k + p * k_stride (bytes), or
// k + (p % ring) * k_stride in a ring of `ring` rows (a multiple of kKvOffsetBlock); V likewise.
struct AttentionArgs {
    const float* q = nullptr;
    int64_t q_token_stride = 0;
    int64_t n_group = 1;       // query heads sharing this KV head
    int64_t n_tokens = 1;      // 1 for decode
    int64_t pos0 = 0;
    const void* k = nullptr;
    KVType k_type = KVType::F16;
    size_t k_stride = 0;
    // Block offsets of the keys ([position / kKvOffsetBlock][head_dim] f16, that index modulo
    // ring / kKvOffsetBlock in a ring) when kv_has_block_offset(k_type, true), else null.
    const uint16_t* k_offset = nullptr;
    // With k_offset: position 0's key exactly (rotated basis, f16), or null. The first position
    // is the attention sink most queries look at; its quantization error costs more than any
    // other row's (0.9 points of int4 perplexity in the study behind README.md).
    const uint16_t* k_sink = nullptr;
    const void* v = nullptr;
    KVType v_type = KVType::F16;
    size_t v_stride = 0;
    int64_t head_dim = 64;
    float scale = 0.125f;      // usually 1/sqrt(head_dim)
    // Scores s (after scale) become softcap * tanh(s / softcap) when softcap > 0 (Gemma 2).
    float softcap = 0.0f;
    int64_t window = 0;        // > 0: sliding window (above)
    int64_t ring = 0;          // > 0: rows wrap modulo ring (above)
    float* out = nullptr;
    int64_t out_token_stride = 0;
};

// Fast path, dispatched on the current ISA; tiled over positions with an online softmax.
void attention(const AttentionArgs& a);
// Oracle: decode every row to float, then plain softmax(q·K^T·scale)·V.
void attention_ref(const AttentionArgs& a);

}  // namespace edgert
