"""Per-image time of forward + input gradient of EfficientNet-Lite0 at 224 by batch size (interleaved repeats).

Usage: python benchmarks/bench_batch_size.py   (2 threads; prints the minimum of 3 repeats per batch size)
"""
import time, torch, fisherattr, resource
torch.set_num_threads(2)
m = fisherattr.load_classifier("efficientnet_lite0")
for p in m.parameters(): p.requires_grad_(False)
x = fisherattr.load_image("chelsea")
sizes = (2, 4, 8, 16)
res = {bs: [] for bs in sizes}
xs = {bs: x.repeat(bs,1,1,1).requires_grad_(True) for bs in sizes}
for bs in sizes: m(xs[bs])[:,0].sum().backward()
for rep in range(3):
    for bs in sizes:
        n = max(1, 32 // bs)
        t = time.perf_counter()
        for _ in range(n):
            xs[bs].grad = None; m(xs[bs])[:, 0].sum().backward()
        res[bs].append((time.perf_counter() - t) / (n * bs))
for bs, v in res.items(): print(f"batch {bs}: {min(v)*1000:.1f} ms/sample (min of 3; all {[round(a*1000,1) for a in v]})")
