"""Ahead-of-time compilation (fastem.compile, `fastem compile`), the cache
location rule, and the one-line notice of a fit that compiles.

Each test runs fastem in a fresh subprocess with a cache folder of its own,
so that "compiled" and "loaded from the cache" are what a new user sees.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastem

ROOT = Path(fastem.__file__).resolve().parent.parent


def _run(code, env_extra=None, cwd=None, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE_DIR")}
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(pythonpath or ROOT)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


FIT_DIAG = """
import json, sys
import numpy as np
import fastem
X = np.random.default_rng(0).normal(size=(500, 3))
fastem.GaussianMixture(2, covariance_type="diag", random_state=0, verbose=VERBOSE).fit(X)
from fastem import _compile
st = _compile.status("diag", "float64", 3)
print(json.dumps({"dir": st["cache_dir"], "kernels": st["kernels"]}))
"""


def test_compile_then_status_then_fit_loads(tmp_path):
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    out = _run("""
        import json, fastem
        recs = fastem.compile(covariance_types=["diag"], dtypes=["float64"], n_features=3,
                              progress=False)
        print(json.dumps(recs))
    """, env)
    recs = json.loads(out.stdout)
    assert [r["kernel"] for r in recs] == ["pass_diag/float64", "logprob_diag/float64",
                                           "hard_pass/float64"]
    assert not any(r["cached"] for r in recs)
    assert all(r["seconds"] > 0 for r in recs)
    # a second process finds every kernel in the cache
    out = _run("""
        import json, fastem
        print(json.dumps(fastem.compile("diag", "float64", 3, progress=False)))
    """, env)
    assert all(r["cached"] for r in json.loads(out.stdout))
    # and a fit with verbose set has nothing to announce
    out = _run(FIT_DIAG.replace("VERBOSE", "1"), env)
    assert "compiling kernels" not in out.stderr
    info = json.loads(out.stdout.splitlines()[-1])
    assert Path(info["dir"]).resolve().is_relative_to(cache.resolve())
    assert dict(info["kernels"])["pass_diag/float64"] is True


def test_first_fit_says_it_compiles_once(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = _run(FIT_DIAG.replace("VERBOSE", "1"), env)
    lines = [ln for ln in out.stderr.splitlines() if "compiling kernels" in ln]
    assert lines == [
        "fastem: compiling kernels for diag/float64, once per install and CPU "
        "(a few seconds; 'fastem compile' does it ahead of time)..."]
    # without verbose, a library call prints nothing
    env2 = {"NUMBA_CACHE_DIR": str(tmp_path / "cache2")}
    out = _run(FIT_DIAG.replace("VERBOSE", "0"), env2)
    assert "compiling" not in out.stderr


def test_read_only_install_caches_in_user_cache_dir(tmp_path):
    """A package folder fastem cannot write to: the kernels are cached in the
    user's cache folder (Numba's rule), and a second process loads them."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fastem", site / "fastem",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    home = tmp_path / "home"
    home.mkdir()
    # no writable __pycache__ next to the sources: for a non-root user the
    # package is made read-only; root can write anywhere, so there a plain
    # file takes the place of the __pycache__ folder, which defeats it the
    # same way
    for folder in [site / "fastem", *(p for p in (site / "fastem").rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder")
    if os.geteuid() != 0:
        for p in sorted(site.rglob("*"), reverse=True):
            p.chmod(0o555 if p.is_dir() else 0o444)
        (site / "fastem").chmod(0o555)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    try:
        out = _run(FIT_DIAG.replace("VERBOSE", "0"), env, cwd=tmp_path, pythonpath=site)
        info = json.loads(out.stdout.splitlines()[-1])
        assert Path(info["dir"]).resolve().is_relative_to(home.resolve())
        assert dict(info["kernels"])["pass_diag/float64"] is True
        assert any((home / ".cache").rglob("*.nbi"))
        out = _run("""
            import fastem
            from fastem import _compile
            print(dict(_compile.status("diag", "float64", 3)["kernels"])["pass_diag/float64"])
        """, env, cwd=tmp_path, pythonpath=site)
        assert out.stdout.strip() == "True"
    finally:
        for p in site.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_compile_arguments_are_checked():
    with pytest.raises(ValueError, match="covariance_types must be among"):
        fastem.compile(covariance_types=["fll"], progress=False)
    with pytest.raises(ValueError, match="dtypes must be among"):
        fastem.compile(dtypes=["float16"], progress=False)
    with pytest.raises(ValueError, match="n_features must be a positive integer"):
        fastem.compile(n_features=0, progress=False)


def test_cli_compile_status_and_errors(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = _run("""
        from fastem.cli import main
        raise SystemExit(main(["compile", "--status", "--types", "tied",
                               "--dtypes", "float32"]))
    """, env)
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"cache: {tmp_path / 'cache'}")
    # pass_tied, logprob_tied, hard_pass (the k-means start) and pass_missing
    # (rows with NaN; float64 for every data dtype)
    assert lines[2] == "compiled: 0 of 4 kernels"
    assert "no   hard_pass/float32" in out.stdout
    assert "no   pass_tied/float32" in out.stdout
    assert "no   pass_missing/float64" in out.stdout
    proc = subprocess.run([sys.executable, "-m", "fastem.cli", "compile", "--dtypes",
                           "float16"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_first_process_runs_the_cached_code(tmp_path):
    """The process that finds a kernel missing from the cache (and has it
    compiled) gets bitwise the results of every later process, which loads
    the kernel from the cache: Numba's freshly linked code could differ in
    the last bits from the cached machine code."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    code = """
        import hashlib
        import numpy as np
        import fastem
        X = np.random.default_rng(0).normal(size=(20000, 16))
        gm = fastem.GaussianMixture(4, covariance_type="diag", random_state=0, max_iter=5,
                                    tol=0).fit(X)
        parts = [gm.means_, gm.covariances_, gm.weights_, np.float64(gm.lower_bound_),
                 gm.predict_proba(X[:1000])]
        print(hashlib.sha256(b"".join(np.asarray(p).tobytes() for p in parts)).hexdigest())
    """
    first = _run(code, env).stdout.split()[-1]
    second = _run(code, env).stdout.split()[-1]
    assert first == second


def test_a_changed_helper_invalidates_the_cached_kernels(tmp_path):
    """Numba keys a cached function by its own file only; fastem's kernels
    carry a digest of the whole kernel package, so editing a helper in
    another file recompiles them instead of loading stale code."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fastem", site / "fastem",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    status = """
        from fastem import _compile
        print(dict(_compile.status("diag", "float64", 3)["kernels"])["pass_diag/float64"])
    """
    _run("""
        import fastem
        fastem.compile("diag", "float64", 3, progress=False)
    """, env, cwd=tmp_path, pythonpath=site)
    assert _run(status, env, cwd=tmp_path, pythonpath=site).stdout.strip() == "True"
    helper = site / "fastem" / "_kernels" / "_moments.py"
    helper.write_text(helper.read_text() + "\n# an edit\n")
    assert _run(status, env, cwd=tmp_path, pythonpath=site).stdout.strip() == "False"


def test_cli_fit_compiles_its_kernel_once_in_the_background(tmp_path):
    """`fastem fit` starts compiling the kernel it needs as soon as it knows
    the data's shape (overlapping its imports), and its 'kmeans' start the
    hard-assignment kernel in a second child (both compile at once); the fit
    then waits for those children instead of starting others, and announces
    once."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = _run("""
        import json, sys
        from fastem._kernels import _aot
        spawned = []
        real = _aot._spawn
        def counting(variants, **kwargs):
            spawned.append([(v[0], str(v[1])) for v in variants])
            return real(variants, **kwargs)
        _aot._spawn = counting
        from fastem.cli import main
        code = main(["fit", "--covariance-type", "diag"])
        from fastem import _compile
        st = dict(_compile.status("diag", "float64", 2)["kernels"])
        print(json.dumps({"code": code, "spawned": spawned, "in_flight": len(_aot._IN_FLIGHT),
                          "cached": st["pass_diag/float64"] and st["hard_pass/float64"]}))
    """, env)
    info = json.loads(out.stdout.splitlines()[-1])
    assert info["code"] in (0, None)
    assert info["spawned"] == [[["pass_diag", "float64"]], [["hard_pass", "float64"]]]
    assert info["in_flight"] == 0
    assert info["cached"] is True
    assert out.stderr.count("compiling kernels") == 1
    assert "BIC" in out.stdout


def test_background_compile_is_stopped_when_nobody_waits(tmp_path):
    """A background compile whose fit never asks for it (the command failed
    first) does not outlive the process."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    out = _run("""
        from fastem import _compile
        from fastem._kernels import _aot
        _compile.prefetch("full", "float64", 3)
        (proc,) = set(_aot._IN_FLIGHT.values())
        print(proc.pid)
    """, env)
    pid = int(out.stdout.split()[-1])
    # the child was killed and reaped at exit: no such process now
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_concurrent_cache_saves_keep_every_variant(tmp_path, monkeypatch):
    """Two variants of one function saved to Numba's cache at the same time
    (two compiling processes; here two threads, which the file lock excludes
    alike) must get data files of their own.  Numba's own save loads the
    index, takes the first free data file number and writes: with the index
    reads slowed down, both savers took file 1 and one key loaded the other's
    data."""
    import threading
    import time

    from numba.core import caching

    from fastem._kernels import _cache_lock

    assert _cache_lock.install(), "the cache saves are not locked on this platform"
    assert caching.IndexDataCacheFile.save is _cache_lock._locked_save
    original = caching.IndexDataCacheFile._load_index

    def slow_load_index(self):
        out = original(self)
        time.sleep(0.3)
        return out

    monkeypatch.setattr(caching.IndexDataCacheFile, "_load_index", slow_load_index)
    stamp = ("source", 1)
    files = [caching.IndexDataCacheFile(str(tmp_path), "f", stamp) for _ in range(2)]
    start = threading.Barrier(2)

    def save(i):
        start.wait()
        files[i].save(("key", i), ("code of variant", i))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = caching.IndexDataCacheFile(str(tmp_path), "f", stamp)
    for i in range(2):
        assert reader.load(("key", i)) == ("code of variant", i)
    assert sorted(p.name for p in tmp_path.glob("f.*.nbc")) == ["f.1.nbc", "f.2.nbc"]
