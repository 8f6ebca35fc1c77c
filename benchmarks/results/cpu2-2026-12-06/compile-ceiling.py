# torch.compile (inductor, static shapes) of the bundled model against eager, padded and packed: one 31 x 130-token pass, 2 threads.
# Run: flock /tmp/cpu.lock .venv/bin/python benchmarks/results/cpu2-2026-12-06/compile-ceiling.py
import time, torch, numpy as np
torch.set_num_threads(2)
from sentence_transformers import SentenceTransformer
from target_server.embedder import bundled_model_path, SentenceTransformerEmbedder
from target_server.packed import PackedEncoder, PackedBatch
m = SentenceTransformer(bundled_model_path(), device="cpu").eval()
pad = SentenceTransformerEmbedder(m, "b")
ids = pad.tokenize(["word " * 600])[0]
b = [ids[:129] + [102]] * 31
enc = PackedEncoder(m)
def bench(label, fn, n=5):
    with torch.inference_mode():
        t0=time.perf_counter(); fn(); first=time.perf_counter()-t0
        fn()
        ts=[]
        for _ in range(n):
            t=time.perf_counter(); fn(); ts.append(time.perf_counter()-t)
    print(f"{label}: first {first:.1f} s, median {np.median(ts)*1e3:.0f} ms, {31*130/np.median(ts):,.0f} tok/s", flush=True)
pb = PackedBatch.of(b)
bench("packed eager", lambda: enc(pb))
feats = pad.stage(b)
bench("padded eager", lambda: pad._forward(feats, None))
cm = torch.compile(m[0].auto_model, dynamic=False)
f = {k: v for k, v in feats.items() if isinstance(v, torch.Tensor)}
bench("hf model compiled (static)", lambda: cm(**f))
bench("hf model eager", lambda: m[0].auto_model(**f))
