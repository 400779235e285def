# Generates engine/src/model/testdata/dequant_vectors.json with the `gguf` PyPI package.
import json, numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES
from gguf.quants import dequantize
rng = np.random.default_rng(7)
# byte offsets of half-float scale fields per type (random bytes there could be inf/nan)
halves = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
          T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
out = {}
for t in [T.F32, T.F16, T.BF16] + list(halves):
    block, size = GGML_QUANT_SIZES[t]
    nblocks = 3 if block > 1 else 64
    if t == T.F32:
        raw = rng.standard_normal(nblocks).astype('<f4').tobytes()
    elif t == T.F16:
        raw = rng.standard_normal(nblocks).astype('<f2').tobytes()
    elif t == T.BF16:
        raw = (rng.standard_normal(nblocks).astype('<f4').view('<u4') >> 16).astype('<u2').tobytes()
    else:
        b = bytearray(rng.integers(0, 256, nblocks * size, dtype=np.uint8).tobytes())
        for k in range(nblocks):
            for off in halves[t]:
                v = np.array([rng.uniform(0.001, 0.05) * rng.choice([-1, 1])], dtype='<f2').tobytes()
                b[k * size + off:k * size + off + 2] = v
        raw = bytes(b)
    vals = dequantize(np.frombuffer(raw, dtype=np.uint8), t).astype('<f4').reshape(-1)
    assert np.all(np.isfinite(vals))
    out[t.name] = {"type": int(t), "n": int(vals.size), "raw": raw.hex(), "expected": vals.tobytes().hex()}
import os
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'dequant_vectors.json'), 'w'), indent=1)
print({k: v["n"] for k, v in out.items()})
