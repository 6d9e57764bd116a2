// llama.cpp — the Llama forward pass, reading top to bottom like the model:
// embed → for each block { RMSNorm → Q,K,V (+bias) → RoPE → cache → GQA attention → out proj →
// residual; RMSNorm → SwiGLU FFN → residual } → final RMSNorm → output projection.
//
// A chunk of n_tok tokens runs as matmuls with n_tok rows (prefill); n_tok == 1 is decode. All
// arithmetic goes through kernels.h; attention lives in runtime/attention.
#include "models/llama.h"

#include "kernels/kernels.h"
#include "runtime/context.h"

namespace edgert {
namespace {

void rmsnorm_rows(float* y, const float* x, const float* w, int n_tok, int64_t n, float eps) {
    for (int t = 0; t < n_tok; ++t) rmsnorm(y + t * n, x + t * n, w, n, eps);
}

void add_bias_rows(float* y, const float* bias, int n_tok, int64_t n) {
    if (!bias) return;
    for (int t = 0; t < n_tok; ++t) add_inplace(y + t * n, bias, n);
}

}  // namespace

void llama_forward(Context& ctx, const int32_t* tokens, int n_tok, int pos0, float* logits,
                   bool all_logits) {
    const Model& m = ctx.model_;
    const Hparams& hp = m.meta.hparams;
    const int64_t H = hp.hidden_size, F = hp.intermediate_size, Dh = hp.head_dim;
    const int64_t q_dim = int64_t(hp.num_heads) * Dh, kv_dim = int64_t(hp.num_kv_heads) * Dh;
    const float eps = hp.rms_norm_eps;
    ThreadPool* pool = (n_tok > 1 && ctx.pool_batch_) ? ctx.pool_batch_.get() : ctx.pool_.get();
    Activations& a = ctx.act_;
    const AttentionShape shape{hp.num_heads, hp.num_kv_heads, hp.head_dim};

    for (int t = 0; t < n_tok; ++t) {
        row_to_float(m.token_embd.type, m.token_embd.data, tokens[t], H, a.x.data() + t * H);
    }

    for (int l = 0; l < hp.num_layers; ++l) {
        const LlamaLayer& L = m.layers[size_t(l)];

        rmsnorm_rows(a.xb.data(), a.x.data(), L.attn_norm, n_tok, H, eps);
        // One input, three weights: quantize xb once and run all tiles in one pool round.
        const MatmulTarget qkv[] = {{&L.wq, a.q.data()}, {&L.wk, a.k.data()}, {&L.wv, a.v.data()}};
        matmul_multi(qkv, 3, a.xb.data(), n_tok, pool);
        add_bias_rows(a.q.data(), L.bq, n_tok, q_dim);
        add_bias_rows(a.k.data(), L.bk, n_tok, kv_dim);
        add_bias_rows(a.v.data(), L.bv, n_tok, kv_dim);
        for (int t = 0; t < n_tok; ++t) {
            rope_inplace(a.q.data() + t * q_dim, Dh, hp.num_heads, pos0 + t, m.inv_freq.data());
            rope_inplace(a.k.data() + t * kv_dim, Dh, hp.num_kv_heads, pos0 + t, m.inv_freq.data());
        }
        ctx.kv_.store(l, pos0, n_tok, a.k.data(), a.v.data());
        gqa_attention(a.q.data(), n_tok, pos0, ctx.kv_, l, shape, a.att.data(), pool);
        matmul(L.wo, a.att.data(), n_tok, a.proj.data(), pool);
        add_inplace(a.x.data(), a.proj.data(), n_tok * H);

        rmsnorm_rows(a.xb.data(), a.x.data(), L.ffn_norm, n_tok, H, eps);
        const MatmulTarget gate_up[] = {{&L.w_gate, a.gate.data()}, {&L.w_up, a.up.data()}};
        matmul_multi(gate_up, 2, a.xb.data(), n_tok, pool);
        silu_mul(a.gate.data(), a.up.data(), n_tok * F);
        matmul(L.w_down, a.gate.data(), n_tok, a.proj.data(), pool);
        add_inplace(a.x.data(), a.proj.data(), n_tok * H);
    }

    if (!logits) return;
    // Only the rows whose logits are wanted pay for the (large) output projection.
    const int first = all_logits ? 0 : n_tok - 1;
    const int n_rows = n_tok - first;
    rmsnorm_rows(a.xb.data(), a.x.data() + first * H, m.output_norm, n_rows, H, eps);
    matmul(m.output, a.xb.data(), n_rows, logits, pool);
}

// The same block as llama_forward, with row t belonging to ctxs[t]: RoPE at that context's
// position, K/V into its cache, attention over its cache. Everything else is row-wise (norms,
// per-row activation quantization, matmul rows), so row t equals a one-token pass of ctxs[t].
void llama_forward_batch(Context* const* ctxs, const int32_t* tokens, int n, float* logits) {
    Context& lead = *ctxs[0];
    const Model& m = lead.model_;
    const Hparams& hp = m.meta.hparams;
    const int64_t H = hp.hidden_size, F = hp.intermediate_size, Dh = hp.head_dim;
    const int64_t q_dim = int64_t(hp.num_heads) * Dh, kv_dim = int64_t(hp.num_kv_heads) * Dh;
    const float eps = hp.rms_norm_eps;
    ThreadPool* pool = lead.pool_.get();
    Activations& a = lead.act_;
    const AttentionShape shape{hp.num_heads, hp.num_kv_heads, hp.head_dim};

    for (int t = 0; t < n; ++t) {
        row_to_float(m.token_embd.type, m.token_embd.data, tokens[t], H, a.x.data() + t * H);
    }

    for (int l = 0; l < hp.num_layers; ++l) {
        const LlamaLayer& L = m.layers[size_t(l)];

        rmsnorm_rows(a.xb.data(), a.x.data(), L.attn_norm, n, H, eps);
        const MatmulTarget qkv[] = {{&L.wq, a.q.data()}, {&L.wk, a.k.data()}, {&L.wv, a.v.data()}};
        matmul_multi(qkv, 3, a.xb.data(), n, pool);
        add_bias_rows(a.q.data(), L.bq, n, q_dim);
        add_bias_rows(a.k.data(), L.bk, n, kv_dim);
        add_bias_rows(a.v.data(), L.bv, n, kv_dim);
        for (int t = 0; t < n; ++t) {
            Context& c = *ctxs[t];
            const int pos = c.n_past_;
            rope_inplace(a.q.data() + t * q_dim, Dh, hp.num_heads, pos, m.inv_freq.data());
            rope_inplace(a.k.data() + t * kv_dim, Dh, hp.num_kv_heads, pos, m.inv_freq.data());
            c.kv_.store(l, pos, 1, a.k.data() + t * kv_dim, a.v.data() + t * kv_dim);
            gqa_attention(a.q.data() + t * q_dim, 1, pos, c.kv_, l, shape, a.att.data() + t * q_dim,
                          pool);
        }
        matmul(L.wo, a.att.data(), n, a.proj.data(), pool);
        add_inplace(a.x.data(), a.proj.data(), n * H);

        rmsnorm_rows(a.xb.data(), a.x.data(), L.ffn_norm, n, H, eps);
        const MatmulTarget gate_up[] = {{&L.w_gate, a.gate.data()}, {&L.w_up, a.up.data()}};
        matmul_multi(gate_up, 2, a.xb.data(), n, pool);
        silu_mul(a.gate.data(), a.up.data(), n * F);
        matmul(L.w_down, a.gate.data(), n, a.proj.data(), pool);
        add_inplace(a.x.data(), a.proj.data(), n * H);
    }

    rmsnorm_rows(a.xb.data(), a.x.data(), m.output_norm, n, H, eps);
    matmul(m.output, a.xb.data(), n, logits, pool);
}

}  // namespace edgert
