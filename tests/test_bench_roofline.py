"""fastem bench's roofline: the counts, the floor, the measured rates, the header
and the native-BLAS environment."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from fastem import bench
from fastem.bench import _machine


def test_roofline_counts_follow_the_documented_formulas():
    n, d, K = 10, 3, 4
    tri = d * (d + 1) // 2
    full = bench.roofline_counts(n, d, K, "full")
    assert full == {"fma": n * 2 * K * (tri + d), "exp": n * K, "bytes": n * d * 8}
    assert bench.roofline_counts(n, d, K, "tied")["fma"] == n * (2 * tri + 2 * K * d)
    assert bench.roofline_counts(n, d, K, "diag")["fma"] == n * 4 * K * d
    assert bench.roofline_counts(n, d, K, "spherical")["fma"] == n * (d + 2 * K * d + K)
    assert bench.roofline_counts(n, d, K, "diag", itemsize=4)["bytes"] == n * d * 4
    # the reference workload M: 1e6 x 16, K=16, full
    assert bench.roofline_counts(1_000_000, 16, 16, "full")["fma"] == 1_000_000 * 32 * 152
    with pytest.raises(ValueError, match="Unknown covariance_type 'bogus'"):
        bench.roofline_counts(n, d, K, "bogus")


def test_roofline_floor_is_the_slower_of_compute_and_memory():
    rates = {"fma_per_s": {"float64": {"1": 5e9, "all": 1e10}}, "exp_per_s": 1e9,
             "read_bytes_per_s": 1e10}
    counts = {"fma": 2e10, "exp": 1e9, "bytes": 1e9}
    f = bench.roofline_floor(counts, rates)
    assert f["fma_s"] == pytest.approx(2.0) and f["exp_s"] == pytest.approx(1.0)
    assert f["floor_s"] == pytest.approx(3.0) and f["bound"] == "compute"
    f = bench.roofline_floor(dict(counts, bytes=1e11), rates)
    assert f["floor_s"] == pytest.approx(10.0) and f["bound"] == "memory"
    # float32: twice the lanes for the exponentials
    rates["fma_per_s"]["float32"] = {"1": 1e10, "all": 2e10}
    f = bench.roofline_floor(counts, rates, "float32")
    assert f["fma_s"] == pytest.approx(1.0) and f["exp_s"] == pytest.approx(0.5)


def test_isa_is_read_from_the_generated_code():
    isa = bench.target_isa()
    assert isa["isa"] in ("AVX-512", "AVX2", "AVX", "SSE")
    assert isa["vector_bits"] == {"AVX-512": 512, "AVX2": 256, "AVX": 256, "SSE": 128}[isa["isa"]]
    assert isa["cpu"]


def test_measured_rates_are_positive_and_plausible():
    fma = bench.measure_fma_rate("float64", 1, repeats=1)
    # at least one scalar FMA per ns, at most 64 lanes x 2 pipes x 6 GHz
    assert 1e9 < fma < 64 * 2 * 6e9
    assert bench.measure_exp_rate(1, repeats=1) > 1e7
    assert bench.measure_read_bandwidth(1, repeats=1) > 1e8


def test_fma_probe_calls_last_long_enough_to_overlap(monkeypatch):
    # Threads start a fraction of a millisecond apart: with 3 ms calls (AVX2
    # code at FMA_ITERS) two threads measured no faster than one.  The probe
    # lengthens its calls to FMA_SECONDS; a stand-in loop of 1 us per unit
    # records the lengths it is given.
    import time

    from fastem.bench import _roofline as R

    calls = []

    def fake(n):
        calls.append(n)
        time.sleep(n * 1e-9)
        return 0.0

    monkeypatch.setattr(R, "_fma_function", lambda dtype: (fake, 4))
    monkeypatch.setattr(R, "FMA_SECONDS", 0.02)
    rate = R.measure_fma_rate("float64", threads=2, repeats=2)
    timed = calls[2:]  # after the warm-up and the calibration call
    assert len(timed) == 4
    assert all(n * 1e-9 >= 0.02 for n in timed), calls
    # the rate counts every thread's FMAs over the wall time of both
    assert 0 < rate <= 2 * timed[0] * R.FMA_CHAINS * 4 / 0.02


def test_native_blas_env_unsets_only_the_pinning_variables():
    env, unset = _machine.native_blas_env(
        {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "PATH": "/bin"})
    assert env == {"PATH": "/bin"}
    assert unset == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}
    assert _machine.native_blas_env({"PATH": "/bin"}) == ({"PATH": "/bin"}, {})


@pytest.mark.slow
def test_bench_runs_without_openblas_coretype(tmp_path):
    out = tmp_path / "bench.json"
    code = ("import sys; from fastem.bench import main; sys.exit(main(["
            f"'--workloads', 'P', '--scale', '0.002', '--repeats', '1', '--no-sklearn', "
            f"'--no-memory', '--no-roofline', '--quiet', '--json', {str(out)!r}]))")
    env = dict(__import__("os").environ, OPENBLAS_CORETYPE="Haswell")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "running without OPENBLAS_CORETYPE=Haswell" in proc.stderr
    assert "[unset: OPENBLAS_CORETYPE=Haswell]" in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["blas_env_unset"] == {"OPENBLAS_CORETYPE": "Haswell"}


def test_header_and_table_carry_isa_blas_kernel_and_floor():
    rates = {"fma_per_s": {"float64": {"1": 1e10, "all": 2e10}}, "exp_per_s": 1e9,
             "read_bytes_per_s": 2e10, "threads": 2, "isa": bench.target_isa()}
    res = bench.run_workload("P", scale=0.002, repeats=1, libraries=("fastem",),
                             fastem_iters=2, memory=False, matmul_gflops=10.0,
                             roofline=rates)
    counts = bench.roofline_counts(2000, 16, 16, "spherical")
    floor = bench.roofline_floor(counts, rates)["floor_s"]
    assert res["roofline"]["floor_s"] == pytest.approx(floor)
    sec = res["fastem"]["ms_per_iter"] / 1e3
    if sec > 0:
        assert res["fastem"]["pct_of_floor"] == pytest.approx(100 * floor / sec)
    report = {"machine": bench.machine_info(), "matmul_gflops": {"float64": 10.0},
              "roofline": rates, "results": [res]}
    text = bench.format_table(report)
    head = text.splitlines()[0]
    assert "ISA " + bench.target_isa()["isa"] in head
    assert "kernel " in head  # threadpoolctl's architecture of the BLAS
    assert "roofline (measured): FMA float64 20.0 GFLOP/s per core, 40.0 on 2" in text
    assert "% floor" in text and math.isfinite(res["roofline"]["floor_s"])
    assert np.isfinite(res["fastem"]["ms_per_iter"])
