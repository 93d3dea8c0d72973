"""Out-of-core measurements: peak RSS while streaming .npy files, and the cost of
an out-of-core EM iteration against an in-memory one.

Usage: python tools/measure_out_of_core.py [WORK_DIR]   (needs ~5 GB of disk)

- a 512 MB and a 4 GB .npy (16 features) are fitted with chunk_size=100_000 in
  fresh processes; the peak RSS growth during the fit is read from
  /proc/self/status (VmHWM, reset through /proc/self/clear_refs first);
- one EM iteration (1,000,000 x 16, K=16, full) in memory and from a page-cached
  .npy, median of (t(1+m) - t(1)) / m.
"""
import os, subprocess, sys, time, json, warnings
import numpy as np
PY = sys.executable
D = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fastem_ooc"
os.makedirs(D, exist_ok=True)

def write_npy(path, n, d, seed=0):
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
    rng = np.random.default_rng(seed)
    step = 1_000_000
    centers = rng.uniform(-10, 10, size=(8, d))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        lab = rng.integers(0, 8, hi - lo)
        mm[lo:hi] = centers[lab] + rng.standard_normal((hi - lo, d))
    mm.flush(); del mm

def rss_run(path, K, ct, iters, chunk):
    code = f"""
import warnings, numpy as np, fastem
from fastem.datasets import load_old_faithful
warnings.simplefilter("ignore")
g = fastem.GaussianMixture(2, covariance_type={ct!r}, max_iter=2).fit(np.tile(load_old_faithful(), (1, 8)))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
import time; t = time.perf_counter()
m = fastem.GaussianMixture({K}, covariance_type={ct!r}, max_iter={iters}, tol=0, random_state=0, chunk_size={chunk}).fit({path!r})
el = time.perf_counter() - t
peak = status("VmHWM:")
print(base, peak, el, m.n_iter_)
"""
    out = subprocess.check_output([PY, "-c", code], text=True).split()
    base, peak, el = int(out[0]), int(out[1]), float(out[2])
    return (peak - base) / 1024, el

res = {}
p512 = f"{D}/x512.npy"
if not os.path.exists(p512):
    write_npy(p512, 4_194_304, 16)
grow, el = rss_run(p512, 8, "full", 2, 100_000)
res["512MB"] = dict(file_mb=os.path.getsize(p512) / 2**20, rss_growth_mb=grow, seconds=el)
print("512 MB:", res["512MB"], flush=True)

p4g = f"{D}/x4g.npy"
if not os.path.exists(p4g):
    write_npy(p4g, 33_554_432, 16, seed=1)
grow, el = rss_run(p4g, 4, "diag", 1, 100_000)
res["4GB"] = dict(file_mb=os.path.getsize(p4g) / 2**20, rss_growth_mb=grow, seconds=el)
print("4 GB:", res["4GB"], flush=True)
os.remove(p4g)

# out-of-core vs in-memory iteration, page-cached .npy, 1e6 x 16, K=16 full
import fastem
from sklearn.exceptions import ConvergenceWarning
warnings.simplefilter("ignore", ConvergenceWarning)
X = np.load(p512, mmap_mode="r")[:1_000_000].copy()
p1m = f"{D}/x1m.npy"; np.save(p1m, X)
g = fastem.GaussianMixture(16, random_state=0, max_iter=2).fit(X[:50_000])
init = dict(weights_init=g.weights_, means_init=g.means_, precisions_init=g.precisions_)
def per_iter(src, reps=3, m=4, **kw):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fastem.GaussianMixture(16, tol=0, max_iter=1, **init, **kw).fit(src); t1 = time.perf_counter() - t
        t = time.perf_counter(); fastem.GaussianMixture(16, tol=0, max_iter=1 + m, **init, **kw).fit(src); tm = time.perf_counter() - t
        ts.append((tm - t1) / m)
    return float(np.median(ts))
per_iter(p1m, reps=1, m=1, chunk_size=100_000)  # warm page cache + kernels
mem = per_iter(X)
ooc = per_iter(p1m, chunk_size=100_000)
ooc64k = per_iter(p1m, chunk_size=65_536)
res["iteration"] = {"in_memory_ms": mem * 1e3, "out_of_core_ms_chunk100k": ooc * 1e3,
                    "ratio_chunk100k": ooc / mem, "out_of_core_ms_chunk65536": ooc64k * 1e3,
                    "ratio_chunk65536": ooc64k / mem}
print("iteration:", res["iteration"], flush=True)
with open(f"{D}/result.json", "w") as f:
    json.dump(res, f, indent=1)
