// reference_llama.cpp — see reference_llama.h. Every step recomputes from scratch over the whole
// sequence; slow, obviously right.
#include "reference_llama.h"

#include <cmath>
#include <stdexcept>

namespace edgert_test {
namespace {

using Vec = std::vector<double>;

const std::vector<float>& values(EdgtBuilder& m, const std::string& name) {
    TensorBlob* t = m.find(name);
    if (!t) throw std::runtime_error("reference: no tensor " + name);
    return t->values;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double r = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * double(w[i]);
    return y;
}

// W is [rows][cols] row-major.
Vec matvec(const std::vector<float>& W, const Vec& x, size_t rows) {
    const size_t cols = x.size();
    Vec y(rows, 0.0);
    for (size_t r = 0; r < rows; ++r) {
        for (size_t c = 0; c < cols; ++c) y[r] += double(W[r * cols + c]) * x[c];
    }
    return y;
}

void add_bias(Vec& y, EdgtBuilder& m, const std::string& name) {
    const auto& b = values(m, name);
    for (size_t i = 0; i < y.size(); ++i) y[i] += double(b[i]);
}

void rope(Vec& v, int n_heads, int Dh, int pos, const Vec& inv_freq) {
    const int half = Dh / 2;
    for (int h = 0; h < n_heads; ++h) {
        double* x = v.data() + h * Dh;
        for (int i = 0; i < half; ++i) {
            const double a = pos * inv_freq[size_t(i)];
            const double x1 = x[i], x2 = x[i + half];
            x[i] = x1 * std::cos(a) - x2 * std::sin(a);
            x[i + half] = x2 * std::cos(a) + x1 * std::sin(a);
        }
    }
}

}  // namespace

std::vector<std::vector<double>> reference_llama_logits(const TinyLlamaSpec& s, EdgtBuilder& m,
                                                        const std::vector<int32_t>& tokens) {
    const size_t H = size_t(s.hidden), V = size_t(s.vocab), F = size_t(s.ffn), Dh = size_t(s.head_dim);
    const size_t n = tokens.size(), q_dim = size_t(s.heads) * Dh, kv_dim = size_t(s.kv_heads) * Dh;
    Vec inv_freq(Dh / 2);
    for (size_t i = 0; i < Dh / 2; ++i) {
        inv_freq[i] = std::pow(double(s.rope_theta), -2.0 * double(i) / double(Dh));
        if (s.rope_freqs) inv_freq[i] /= double(values(m, "rope_freqs.weight")[i]);
    }
    const auto& embd = values(m, "token_embd.weight");
    std::vector<Vec> x(n, Vec(H));
    for (size_t t = 0; t < n; ++t) {
        for (size_t i = 0; i < H; ++i) x[t][i] = double(embd[size_t(tokens[t]) * H + i]);
    }
    for (int l = 0; l < s.layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        std::vector<Vec> q(n), k(n), v(n);
        for (size_t t = 0; t < n; ++t) {
            const Vec xn = rmsnorm(x[t], values(m, p + "attn_norm.weight"), s.eps);
            q[t] = matvec(values(m, p + "attn_q.weight"), xn, q_dim);
            k[t] = matvec(values(m, p + "attn_k.weight"), xn, kv_dim);
            v[t] = matvec(values(m, p + "attn_v.weight"), xn, kv_dim);
            if (s.bias) {
                add_bias(q[t], m, p + "attn_q.bias");
                add_bias(k[t], m, p + "attn_k.bias");
                add_bias(v[t], m, p + "attn_v.bias");
            }
            rope(q[t], s.heads, int(Dh), int(t), inv_freq);
            rope(k[t], s.kv_heads, int(Dh), int(t), inv_freq);
        }
        const int group = s.heads / s.kv_heads;
        for (size_t t = 0; t < n; ++t) {
            Vec att(q_dim, 0.0);
            for (int h = 0; h < s.heads; ++h) {
                const size_t kvo = size_t(h / group) * Dh, qo = size_t(h) * Dh;
                Vec sc(t + 1);
                double mx = -1e300;
                for (size_t j = 0; j <= t; ++j) {
                    double d = 0;
                    for (size_t i = 0; i < Dh; ++i) d += q[t][qo + i] * k[j][kvo + i];
                    sc[j] = d / std::sqrt(double(Dh));
                    mx = std::max(mx, sc[j]);
                }
                double z = 0;
                for (double& e : sc) z += (e = std::exp(e - mx));
                for (size_t j = 0; j <= t; ++j) {
                    for (size_t i = 0; i < Dh; ++i) att[qo + i] += sc[j] / z * v[j][kvo + i];
                }
            }
            const Vec o = matvec(values(m, p + "attn_output.weight"), att, H);
            for (size_t i = 0; i < H; ++i) x[t][i] += o[i];
            const Vec xn = rmsnorm(x[t], values(m, p + "ffn_norm.weight"), s.eps);
            Vec g = matvec(values(m, p + "ffn_gate.weight"), xn, F);
            const Vec u = matvec(values(m, p + "ffn_up.weight"), xn, F);
            for (size_t i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
            const Vec d = matvec(values(m, p + "ffn_down.weight"), g, H);
            for (size_t i = 0; i < H; ++i) x[t][i] += d[i];
        }
    }
    const auto& out_w = values(m, s.tie ? "token_embd.weight" : "output.weight");
    std::vector<Vec> logits(n);
    for (size_t t = 0; t < n; ++t) {
        logits[t] = matvec(out_w, rmsnorm(x[t], values(m, "output_norm.weight"), s.eps), V);
    }
    return logits;
}

}  // namespace edgert_test
