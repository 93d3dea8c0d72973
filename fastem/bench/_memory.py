"""Peak memory of one fit, measured in a fresh subprocess; running benchmark subprocesses."""

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from ._timing import _estimator, _quiet, warm_up


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _hwm_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes():
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _memory_child(spec_path):
    """Subprocess entry: one fit(max_iter=1), print its peak RSS growth."""
    with open(spec_path) as f:
        spec = json.load(f)
    X = np.load(spec["X"])
    init = dict(np.load(spec["init"]))
    lib, K, ct, n_jobs = spec["lib"], spec["K"], spec["covariance_type"], spec["n_jobs"]
    warm_up(lib, X.shape[1], K, ct, X.dtype, n_jobs)
    est = _estimator(lib, K, ct, 1, 0.0, init, n_jobs)
    gc.collect()
    base = _rss_bytes()
    maxrss_before = _maxrss_bytes()
    reset = base is not None and _reset_hwm()
    peak = [base or 0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            r = _rss_bytes()
            if r is not None and r > peak[0]:
                peak[0] = r
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with _quiet():
        est.fit(X)
    stop.set()
    sampler.join()
    if reset:
        hwm = _hwm_bytes()
        growth, method = max(hwm, peak[0]) - base, "VmHWM reset via /proc/self/clear_refs"
    elif base is not None:
        growth, method = peak[0] - base, "RSS sampled every 5 ms"
    else:
        growth, method = _maxrss_bytes() - maxrss_before, "ru_maxrss growth"
    print(json.dumps({"peak_mem_bytes": int(max(growth, 0)), "method": method}))


def measure_peak_memory(lib, X_path, init_path, K, covariance_type, n_jobs=None,
                        timeout=3600):
    """Peak RSS growth (bytes) of one ``fit(max_iter=1)`` in a fresh process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"lib": lib, "X": X_path, "init": init_path, "K": K,
                   "covariance_type": covariance_type, "n_jobs": n_jobs}, f)
        spec = f.name
    try:
        out = _run_child("from fastem.bench._memory import _memory_child; "
                         f"_memory_child({spec!r})", timeout=timeout)
    finally:
        os.unlink(spec)
    return out


def _run_child(code, env=None, timeout=3600):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark subprocess failed (exit {proc.returncode}):\n{tail}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"benchmark subprocess printed no result:\n{proc.stdout[-2000:]}")
    out = json.loads(lines[-1])
    out["process_s"] = wall
    return out
