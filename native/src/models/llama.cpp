// llama.cpp — the forward pass of every family, reading top to bottom like the model:
// embed (× √H) → for each block { RMSNorm → Q,K,V (+bias) → (Q/K norm) → (partial) RoPE → cache →
// GQA attention (sliding window, soft-capped scores) → out proj → (post-norm) → residual;
// RMSNorm → SwiGLU or GeGLU FFN → (post-norm) → residual } → final RMSNorm → output projection
// (→ soft-capped logits).
//
// The parenthesised steps are the declared differences of a family (models/families.def) and of
// its hparams; Llama takes none of them. A chunk of n_tok tokens runs as matmuls with n_tok rows
// (prefill); n_tok == 1 is decode. All arithmetic goes through kernels.h; attention lives in
// runtime/attention.
#include "models/llama.h"

#include <cmath>

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

// RMSNorm of every head vector of every token (Q/K norm), or nothing without a weight.
void head_norm_rows(float* x, const float* w, int n_tok, int64_t n_heads, int64_t Dh, float eps) {
    if (!w) return;
    for (int64_t i = 0; i < int64_t(n_tok) * n_heads; ++i) rmsnorm(x + i * Dh, x + i * Dh, w, Dh, eps);
}

// A block's output before the residual add: post-normed in place when the family has post_norms.
void post_norm_rows(float* y, const float* w, int n_tok, int64_t n, float eps) {
    if (w) rmsnorm_rows(y, y, w, n_tok, n, eps);
}

// RoPE of every head of one token's q or k. Partial rotary (rot < Dh, Phi-4-mini) turns the first
// rot dims of each head (pairs i, i + rot/2) and passes the rest: one kernel call per head, whose
// head_dim argument is then rot. LongRoPE's factor scales only the turned dims then (as
// transformers' cos/sin and ggml's rope do), so it is applied here, not folded into attn_scale.
void rope_heads(float* v, int64_t Dh, int64_t rot, int64_t n_heads, int64_t pos, const float* inv_freq,
                float mscale) {
    if (rot == Dh) {
        rope_inplace(v, Dh, n_heads, pos, inv_freq);
        return;
    }
    for (int64_t h = 0; h < n_heads; ++h) {
        float* x = v + h * Dh;
        rope_inplace(x, rot, 1, pos, inv_freq);
        if (mscale != 1.f) {
            for (int64_t i = 0; i < rot; ++i) x[i] *= mscale;
        }
    }
}

void softcap_inplace(float* x, int64_t n, float cap) {
    if (cap <= 0.f) return;
    for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

}  // namespace

void llama_forward(Context& ctx, const int32_t* tokens, int n_tok, int pos0, float* logits,
                   bool all_logits) {
    const Model& m = ctx.model_;
    const Hparams& hp = m.meta.hparams;
    const int64_t H = hp.hidden_size, Dh = hp.head_dim;
    const int64_t rot = hp.rotary_dim();
    const float mscale = hp.rope_attn_factor;  // on the turned dims when rot < Dh (rope_heads)
    const float eps = hp.rms_norm_eps;
    ThreadPool* pool = (n_tok > 1 && ctx.pool_batch_) ? ctx.pool_batch_.get() : ctx.pool_.get();
    Activations& a = ctx.act_;
    const FamilyTraits& fam = *m.family;
    // LongRoPE: the long factors once the context may run past the trained original length.
    const bool rope_long = hp.rope_original_context_length > 0 && ctx.n_ctx() > hp.rope_original_context_length;

    for (int t = 0; t < n_tok; ++t) {
        row_to_float(m.token_embd.type, m.token_embd.data, tokens[t], H, a.x.data() + t * H);
    }
    if (fam.embed_scale) {
        const float s = std::sqrt(float(H));
        for (int64_t i = 0; i < n_tok * H; ++i) a.x[size_t(i)] *= s;
    }

    for (int l = 0; l < hp.num_layers; ++l) {
        const LlamaLayer& L = m.layers[size_t(l)];
        const float* inv_freq = rope_long && L.inv_freq_long ? L.inv_freq_long : L.inv_freq;
        // Widths of this layer: a structurally pruned model's differ from layer to layer.
        const int64_t F = hp.ffn_dim(l);
        const int n_heads = hp.heads(l), n_kv_heads = hp.kv_heads(l);
        const int64_t q_dim = int64_t(n_heads) * Dh, kv_dim = int64_t(n_kv_heads) * Dh;
        const AttentionShape shape{n_heads, n_kv_heads, hp.head_dim, m.attn_scale, hp.attn_logit_softcapping};

        rmsnorm_rows(a.xb.data(), a.x.data(), L.attn_norm, n_tok, H, eps);
        // One input, three weights: quantize xb once and run all tiles in one pool round.
        const MatmulTarget qkv[] = {{&L.wq, a.q.data()}, {&L.wk, a.k.data()}, {&L.wv, a.v.data()}};
        matmul_multi(qkv, 3, a.xb.data(), n_tok, pool);
        add_bias_rows(a.q.data(), L.bq, n_tok, q_dim);
        add_bias_rows(a.k.data(), L.bk, n_tok, kv_dim);
        add_bias_rows(a.v.data(), L.bv, n_tok, kv_dim);
        head_norm_rows(a.q.data(), L.q_norm, n_tok, n_heads, Dh, eps);
        head_norm_rows(a.k.data(), L.k_norm, n_tok, n_kv_heads, Dh, eps);
        for (int t = 0; t < n_tok; ++t) {
            rope_heads(a.q.data() + t * q_dim, Dh, rot, n_heads, pos0 + t, inv_freq, mscale);
            rope_heads(a.k.data() + t * kv_dim, Dh, rot, n_kv_heads, pos0 + t, inv_freq, mscale);
        }
        ctx.kv_.store(l, pos0, n_tok, a.k.data(), a.v.data());
        gqa_attention(a.q.data(), n_tok, pos0, ctx.kv_, l, shape, a.att.data(), pool);
        matmul(L.wo, a.att.data(), n_tok, a.proj.data(), pool);
        post_norm_rows(a.proj.data(), L.attn_post_norm, n_tok, H, eps);
        add_inplace(a.x.data(), a.proj.data(), n_tok * H);

        rmsnorm_rows(a.xb.data(), a.x.data(), L.ffn_norm, n_tok, H, eps);
        const MatmulTarget gate_up[] = {{&L.w_gate, a.gate.data()}, {&L.w_up, a.up.data()}};
        matmul_multi(gate_up, 2, a.xb.data(), n_tok, pool);
        if (fam.ffn_activation == FfnActivation::GELU_TANH) {
            gelu_tanh_mul(a.gate.data(), a.up.data(), n_tok * F);
        } else {
            silu_mul(a.gate.data(), a.up.data(), n_tok * F);
        }
        matmul(L.w_down, a.gate.data(), n_tok, a.proj.data(), pool);
        post_norm_rows(a.proj.data(), L.ffn_post_norm, n_tok, H, eps);
        add_inplace(a.x.data(), a.proj.data(), n_tok * H);
    }

    if (!logits) return;
    // Only the rows whose logits are wanted pay for the (large) output projection.
    const int first = all_logits ? 0 : n_tok - 1;
    const int n_rows = n_tok - first;
    rmsnorm_rows(a.xb.data(), a.x.data() + first * H, m.output_norm, n_rows, H, eps);
    matmul(m.output, a.xb.data(), n_rows, logits, pool);
    softcap_inplace(logits, int64_t(n_rows) * hp.vocab_size, hp.final_logit_softcapping);
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
