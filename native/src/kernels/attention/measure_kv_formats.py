# measure_kv_formats.py — relative error of attention outputs under candidate KV row formats, with and
# without a normalized Hadamard rotation of K and/or V, on synthetic keys with biased outlier
# channels and a per-token magnitude spread (as real LLM keys have). Chose the formats in
# kv_row_format.h. Run: python measure_kv_formats.py  (numpy; ~1 min)
import numpy as np
rng = np.random.default_rng(0)

def hadamard(D):
    H = np.array([[1.0]])
    while H.shape[0] < D:
        H = np.block([[H, H], [H, -H]])
    return H / np.sqrt(D)

def make_kv(P, D, outl=True):
    K = rng.standard_normal((P, D))
    V = rng.standard_normal((P, D))
    if outl:
        ch = rng.choice(D, 4, replace=False)
        K[:, ch] = K[:, ch] * 8 + rng.choice([-1, 1], 4) * 12   # outlier channels, biased
        K *= np.exp(0.3 * rng.standard_normal((P, 1)))          # per-token magnitude spread
        V[:, ch[:1]] *= 4
    q = rng.standard_normal(D)
    if outl:
        q[ch] *= 2
    return q, K, V, ch

def qsym(x, bits, g):
    P, D = x.shape
    xg = x.reshape(P, D // g, g)
    if bits == 4:  # q4_0 style: max-magnitude value maps to -8
        idx = np.argmax(np.abs(xg), axis=2)
        mx = np.take_along_axis(xg, idx[..., None], 2)
        d = mx / -8
        d = d.astype(np.float16).astype(np.float64)
        inv = np.where(d != 0, 1 / np.where(d == 0, 1, d), 0)
        qv = np.clip(np.round(xg * inv), -8, 7)
    else:
        d = np.abs(xg).max(axis=2, keepdims=True) / 127
        inv = np.where(d != 0, 1 / np.where(d == 0, 1, d), 0)
        qv = np.clip(np.round(xg * inv), -127, 127)
    return (qv * d).reshape(P, D)

def qasym(x, bits, g):
    P, D = x.shape
    xg = x.reshape(P, D // g, g)
    lo = xg.min(axis=2, keepdims=True); hi = xg.max(axis=2, keepdims=True)
    n = 2 ** bits - 1
    d = ((hi - lo) / n).astype(np.float16).astype(np.float64)
    lo = lo.astype(np.float16).astype(np.float64)
    inv = np.where(d != 0, 1 / np.where(d == 0, 1, d), 0)
    qv = np.clip(np.round((xg - lo) * inv), 0, n)
    return (qv * d + lo).reshape(P, D)

def attn(q, K, V, s):
    z = K @ q * s
    w = np.exp(z - z.max()); w /= w.sum()
    return w @ V

def run(D, P=512, trials=20):
    H = hadamard(D)
    opts = {
        "q8 sym row": lambda x: qsym(x, 8, D),
        "q8 asym row": lambda x: qasym(x, 8, D),
        "q8 sym g32": lambda x: qsym(x, 8, 32),
        "q4 sym g32": lambda x: qsym(x, 4, 32),
        "q4 sym row": lambda x: qsym(x, 4, D),
        "q4 asym row": lambda x: qasym(x, 4, D),
    }
    res = {}
    for t in range(trials):
        q, K, V, ch = make_kv(P, D)
        s = 1 / np.sqrt(D)
        ref = attn(q, K, V, s)
        for name, f in opts.items():
            for rk in (0, 1):
                for rv in (0, 1):
                    Kq = f(K @ H) @ H if rk else f(K)
                    Vq = f(V @ H) @ H if rv else f(V)
                    o = attn(q, Kq, Vq, s)
                    ok = attn(q, Kq, V, s); ov = attn(q, K, Vq, s)
                    e = np.linalg.norm(o - ref) / np.linalg.norm(ref)
                    ek = np.linalg.norm(ok - ref) / np.linalg.norm(ref)
                    ev = np.linalg.norm(ov - ref) / np.linalg.norm(ref)
                    res.setdefault((name, rk, rv), []).append((e, ek, ev))
    print(f"D={D}  relative L2 error of attention output (mean over {trials} trials, P={P})")
    print(f"{'format':14s} rotK rotV   both     K-only   V-only")
    for (name, rk, rv), v in res.items():
        v = np.array(v).mean(0)
        print(f"{name:14s}  {rk}    {rv}   {v[0]:.5f}  {v[1]:.5f}  {v[2]:.5f}")

for D in (64, 128):
    run(D)
