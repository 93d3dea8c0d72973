"""fastem bench: the command runs end to end and its flop model is right."""

import json

import numpy as np
import pytest

from fastem import bench


def test_em_flops_model():
    n, d, K = 10, 3, 4
    tri = n * K * d * (d + 1)  # d(d+1)/2 multiply-adds per point and component
    assert bench.em_flops(n, d, K, "full") == 2 * tri
    assert bench.em_flops(n, d, K, "tied") == tri + n * d * (d + 1)
    assert bench.em_flops(n, d, K, "diag") == n * K * 6 * d
    assert bench.em_flops(n, d, K, "spherical") == n * K * 6 * d
    # the reference workload S: 1e6 x 2, K=8, full
    assert bench.em_flops(1_000_000, 2, 8, "full") == 96_000_000
    with pytest.raises(ValueError, match="Unknown covariance_type 'bogus'"):
        bench.em_flops(n, d, K, "bogus")


def test_workload_shapes_and_blobs():
    assert bench.workload_shape("M") == (1_000_000, 16, 16, "full")
    assert bench.workload_shape("L", 0.5) == (100_000, 64, 32, "full")
    assert bench.workload_shape("S", 1e-9)[0] == 20 * 8  # floor: 20 rows per component
    with pytest.raises(ValueError, match="Unknown workload 'Q'"):
        bench.workload_shape("Q")
    X1, truth = bench.make_blobs(500, 3, 4, "float32")
    X2, _ = bench.make_blobs(500, 3, 4, "float32")
    assert X1.dtype == np.float32 and X1.shape == (500, 3) and X1.flags.c_contiguous
    np.testing.assert_array_equal(X1, X2)  # deterministic
    assert np.isclose(truth["weights"].sum(), 1.0)


def test_main_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench.main(["--workloads", "S", "--scale", "0.002", "--repeats", "1",
                     "--json", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "numpy matmul" in printed and "fastem ms/it" in printed

    report = json.loads(out.read_text())
    assert report["schema"] == bench.SCHEMA
    assert report["mode"] == "iteration"
    assert {"machine", "options", "method", "matmul_gflops", "results"} <= set(report)
    assert report["matmul_gflops"]["float64"] > 0
    assert report["machine"]["numba_threads"] >= 1
    (r,) = report["results"]
    assert r["workload"] == "S" and r["dtype"] == "float64"
    assert (r["n_samples"], r["n_features"], r["n_components"]) == (2000, 2, 8)
    assert r["covariance_type"] == "full"
    assert r["flops_per_iter"] == bench.em_flops(2000, 2, 8, "full")
    assert r["X_nbytes"] == 2000 * 2 * 8
    for lib in ("fastem", "sklearn"):
        res = r[lib]
        assert res["ms_fit_1_iter"] > 0
        # fastem's differenced time spans about 0.2 s of iterations; scikit-learn's
        # is 2 iterations of 2,000 rows (about a millisecond), which a loaded
        # machine's noise can outweigh, so only its finiteness is certain
        if lib == "fastem":
            assert res["ms_per_iter"] > 0, (lib, res["ms_per_iter_repeats"])
        else:
            assert np.isfinite(res["ms_per_iter"]), (lib, res["ms_per_iter_repeats"])
        assert res["iters_timed"] >= 2
        assert res["peak_mem_bytes"] >= 0 and res["peak_mem_ratio"] >= 0
    assert r["fastem"]["gflops"] > 0 and r["fastem"]["pct_of_matmul"] > 0
    sk_ms = r["sklearn"]["ms_per_iter"]
    if sk_ms > 0:
        assert r["speedup"] == sk_ms / r["fastem"]["ms_per_iter"]
    else:  # the timer could not resolve scikit-learn's iterations: no ratio, a
        # NaN that the JSON report writes as null (strict JSON has no NaN)
        assert r["speedup"] is None
    assert r["loglik_iteration"] == 3  # 1 + --sklearn-iters
    assert r["loglik_rel_diff"] <= 1e-6
    assert np.isfinite(r["loglik_fastem"]) and np.isfinite(r["loglik_sklearn"])
    assert bench.format_table(report).count("\n") >= 4


def test_format_table_without_sklearn():
    res = bench.run_workload("D", scale=0.0005, repeats=1, libraries=("fastem",),
                             fastem_iters=2, memory=False, matmul_gflops=10.0,
                             threads=[1, 2])
    assert "sklearn" not in res and "speedup" not in res
    assert set(res["fastem"]["ms_per_iter_by_threads"]) == {"1", "2"}
    # the speed-up is the ratio of the two per-iteration times (NaN when a
    # timing is not positive, as can happen on a tiny, noisy workload)
    t1 = res["fastem"]["ms_per_iter_by_threads"]["1"]
    t2 = res["fastem"]["ms_per_iter_by_threads"]["2"]
    sp = res["fastem"]["thread_speedup"]
    if t1 > 0 and t2 > 0:
        assert sp == pytest.approx(t1 / t2)
    else:
        assert np.isnan(sp)
    table = bench.format_table([res])
    assert "sklearn" not in table.splitlines()[0]
    assert "2T/1T" in table


def test_cli_errors(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--workloads", "Q"])
    assert "unknown workload 'Q'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--threads", "0"])
    assert "expected positive integers" in capsys.readouterr().err
