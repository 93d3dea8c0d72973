"""The ``fastem`` command-line tool, run in-process through fastem.cli.main."""

import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from fastem import GaussianMixture, cli, persist
from fastem.datasets import load_old_faithful

FLOAT = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def run(capsys, *argv):
    """Run the tool in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def run_error(capsys, *argv):
    """Run a command that must fail: exit 2 and one 'fastem: error:' line."""
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastem: error: "), err
    return lines[0][len("fastem: error: "):]


def argparse_error(capsys, *argv):
    """argparse's own errors: exit 2 and one error line (no usage block)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in argv])
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "usage:" not in captured.err and not captured.out
    return lines[0]


def tamper_model(path, edit):
    """Rewrite a saved model: edit(meta, arrays) changes the decoded JSON
    metadata and the arrays (entries named in meta["attributes"])."""
    import json

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
    edit(meta, arrays)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def component_rows(out):
    """Parse the components table: {component: (weight, means, stds)}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("component"))
    header = lines[start].split()
    n_means = sum(h.startswith("mean[") for h in header)
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        values = [float(c) for c in cells[1:]]
        rows[int(cells[0])] = (values[0], values[1:1 + n_means], values[1 + n_means:])
    return header, rows


def printed(out, label):
    m = re.search(rf"{label}: ({FLOAT})", out)
    assert m, f"{label!r} not in output:\n{out}"
    return float(m.group(1))


def check_faithful_fit(out):
    header, rows = component_rows(out)
    assert header[:4] == ["component", "weight", "mean[eruptions]", "mean[waiting]"]
    means = sorted(tuple(m) for _, m, _ in rows.values())
    assert len(means) == 2
    (e1, w1), (e2, w2) = means
    assert abs(e1 - 2.0) < 0.1 and abs(w1 - 54.5) < 1.0
    assert abs(e2 - 4.3) < 0.1 and abs(w2 - 80.0) < 1.0
    weights = sorted(w for w, _, _ in rows.values())
    assert abs(sum(weights) - 1) < 1e-3


@pytest.fixture(scope="module")
def data3():
    """Two blobs in 3 columns (a, b, c)."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 10.0], [6.0, -4.0, 20.0]])
    labels = rng.integers(0, 2, size=600)
    return centers[labels] + rng.normal(size=(600, 3))


@pytest.fixture
def files(tmp_path, data3):
    npy = tmp_path / "data.npy"
    np.save(npy, data3)
    csv = tmp_path / "data.csv"
    np.savetxt(csv, data3, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    return npy, csv


@pytest.fixture
def model_file(tmp_path, capsys):
    path = tmp_path / "faithful.npz"
    rc, _, _ = run(capsys, "fit", "--out", path)
    assert rc == 0
    return path


# ---------------------------------------------------------------------------
# fastem fit
# ---------------------------------------------------------------------------


def test_fit_old_faithful(capsys):
    rc, out, err = run(capsys, "fit")
    assert rc == 0, err
    assert err == ""
    assert out.startswith("fastem GaussianMixture: 2 components, covariance_type='full'")
    assert "data: Old Faithful (embedded, 272 eruptions): 272 rows x 2 features " \
           "(eruptions, waiting)" in out
    check_faithful_fit(out)
    X = load_old_faithful()
    gm = GaussianMixture(2, random_state=0).fit(X)
    assert printed(out, "BIC") == pytest.approx(gm.bic(X), rel=1e-5)
    assert printed(out, "AIC") == pytest.approx(gm.aic(X), rel=1e-5)
    assert printed(out, "log-likelihood") == pytest.approx(gm.score(X) * 272, rel=1e-5)
    assert re.search(r"iterations: \d+ \(converged\)", out)


def test_console_script_subprocess():
    script = os.path.join(os.path.dirname(sys.executable), "fastem")
    cmd = [script] if os.path.exists(script) else [sys.executable, "-m", "fastem.cli"]
    proc = subprocess.run(cmd + ["fit"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    check_faithful_fit(proc.stdout)


def test_fit_old_faithful_one_column(capsys):
    rc, out, _ = run(capsys, "fit", "--columns", "waiting", "-k", "2",
                     "--covariance-type", "diag")
    assert rc == 0
    assert "272 rows x 1 features (waiting)" in out
    _, rows = component_rows(out)
    means = sorted(m[0] for _, m, _ in rows.values())
    assert abs(means[0] - 54.5) < 1.5 and abs(means[1] - 80) < 1.5


@pytest.mark.parametrize("kind", ["npy", "csv"])
def test_fit_file_with_columns(capsys, files, data3, kind):
    path = files[0] if kind == "npy" else files[1]
    cols = "0,2" if kind == "npy" else "a,c"
    names = "x0, x2" if kind == "npy" else "a, c"
    rc, out, err = run(capsys, "fit", path, "-k", "2", "--columns", cols,
                       "--chunk-size", "128")
    assert rc == 0, err
    assert f"data: {path}: 600 rows x 2 features ({names})" in out
    _, rows = component_rows(out)
    means = sorted(tuple(m) for _, m, _ in rows.values())
    np.testing.assert_allclose(means, [[0, 10], [6, 20]], atol=0.3)
    # the statistics equal an in-memory fit on the same columns
    X = np.ascontiguousarray(data3[:, [0, 2]])
    gm = GaussianMixture(2, random_state=0).fit(X)
    assert printed(out, "BIC") == pytest.approx(gm.bic(X), rel=1e-6)


def test_fit_streams_the_file(capsys, monkeypatch, files):
    from fastem import io

    seen = []
    original = GaussianMixture.fit

    def spy(self, X, *args, **kwargs):
        seen.append((X, self.chunk_size))
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(GaussianMixture, "fit", spy)
    npy, csv = files
    assert run(capsys, "fit", npy, "--chunk-size", "100")[0] == 0
    assert seen[-1] == (str(npy), 100)  # the path itself, not a loaded array
    assert run(capsys, "fit", csv, "--columns", "a,b", "--chunk-size", "64")[0] == 0
    src, _ = seen[-1]
    assert isinstance(src, io.ChunkSource)
    assert src.chunk_size == 64 and src.columns == ["a", "b"]


def test_fit_chunk_size_does_not_change_result(capsys, files):
    npy, _ = files
    outs = [run(capsys, "fit", npy, "-k", "2", *extra)[1] for extra in
            ([], ["--chunk-size", "4096"], ["--chunk-size", "37"])]
    tables = [component_rows(o)[1] for o in outs]
    assert tables[0] == tables[1]
    for k in tables[0]:
        np.testing.assert_allclose(tables[2][k][1], tables[0][k][1], rtol=1e-3)


def test_fit_out_info_predict_sample(capsys, tmp_path, files, data3):
    npy, csv = files
    model = tmp_path / "m.npz"
    rc, out, _ = run(capsys, "fit", npy, "-k", "2", "--covariance-type", "diag",
                     "--out", model)
    assert rc == 0 and f"model saved to {model}" in out
    gm = persist.load(model)
    assert gm.covariance_type == "diag" and gm.n_features_in_ == 3

    rc, out, _ = run(capsys, "info", model)
    assert rc == 0
    assert "class: GaussianMixture" in out
    assert "covariance_type: diag" in out
    assert "n_components: 2" in out
    assert "n_features: 3 (x0, x1, x2)" in out
    assert re.search(r"converged: True   n_iter: \d+   lower_bound: " + FLOAT, out)
    _, rows = component_rows(out)
    np.testing.assert_allclose(sorted(tuple(m) for _, m, _ in rows.values()),
                               [[0, 0, 10], [6, -4, 20]], atol=0.3)

    labels = tmp_path / "labels.npy"
    rc, out, _ = run(capsys, "predict", model, npy, "--out", labels)
    assert rc == 0
    got = np.load(labels)
    assert got.dtype == np.int64 and got.shape == (600,)
    np.testing.assert_array_equal(got, gm.predict(data3))
    counts = np.bincount(got, minlength=2)
    assert out.count("\n") == 1
    assert f"predicted 600 rows of {npy}; rows per component 0: {counts[0]}, " \
           f"1: {counts[1]}; labels written to {labels}" in out

    proba = tmp_path / "proba"  # written exactly to this name, no .npy appended
    rc, out, _ = run(capsys, "predict", model, csv, "--proba", "--out", proba,
                     "--chunk-size", "50")
    assert rc == 0 and "probabilities written" in out
    assert not os.path.exists(str(proba) + ".npy")
    with open(proba, "rb") as f:
        P = np.load(f)
    assert P.dtype == np.float64 and P.shape == (600, 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_allclose(P, gm.predict_proba(data3), rtol=1e-12, atol=1e-300)

    samples, slabels = tmp_path / "s.npy", tmp_path / "sl.npy"
    rc, out, _ = run(capsys, "sample", model, "-n", "500", "--out", samples,
                     "--labels", slabels, "--random-state", "3")
    assert rc == 0
    assert f"wrote 500 samples x 3 features to {samples}, their components to {slabels}" \
        in out
    S, L = np.load(samples), np.load(slabels)
    assert S.dtype == np.float64 and S.shape == (500, 3)
    assert L.dtype == np.int64 and L.shape == (500,)
    np.testing.assert_allclose(S[L == 0].mean(axis=0), gm.means_[0], atol=0.5)
    # --random-state makes it reproducible
    again = tmp_path / "s2.npy"
    assert run(capsys, "sample", model, "-n", "500", "--out", again,
               "--random-state", "3")[0] == 0
    assert np.load(again).tobytes() == S.tobytes()


def test_predict_with_columns(capsys, tmp_path, files, data3):
    npy, csv = files
    model = tmp_path / "m.npz"
    assert run(capsys, "fit", csv, "--columns", "b,c", "--out", model)[0] == 0
    rc, _, _ = run(capsys, "predict", model, csv, "--columns", "b,c",
                   "--out", tmp_path / "l.npy")
    assert rc == 0
    gm = persist.load(model)
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"),
                                  gm.predict(np.ascontiguousarray(data3[:, 1:])))


def test_info_unfitted_model(capsys, tmp_path):
    path = tmp_path / "u.npz"
    persist.save(GaussianMixture(4, covariance_type="tied"), path)
    rc, out, _ = run(capsys, "info", path)
    assert rc == 0
    assert "n_components: 4" in out and "covariance_type: tied" in out
    assert "fitted: no" in out
    msg = run_error(capsys, "predict", path, path, "--out", tmp_path / "x.npy")
    assert msg == f"the model in {path} is not fitted"
    msg = run_error(capsys, "sample", path, "-n", "3", "--out", tmp_path / "x.npy")
    assert msg == f"the model in {path} is not fitted"


def test_fit_plot(capsys, tmp_path, files):
    pytest.importorskip("matplotlib")
    png = tmp_path / "fit.png"
    rc, out, _ = run(capsys, "fit", "--plot", png)
    assert rc == 0 and f"plot saved to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png1 = tmp_path / "one.png"
    assert run(capsys, "fit", files[0], "--columns", "2", "--plot", png1)[0] == 0
    assert png1.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    msg = run_error(capsys, "fit", "--plot", tmp_path / "x.png")
    assert "pip install 'fastem[plot]'" in msg
    assert not os.listdir(tmp_path)


def test_fit_online(capsys, tmp_path, files):
    pytest.importorskip("fastem.online")
    model = tmp_path / "online.npz"
    rc, out, err = run(capsys, "fit", "--online", "--batch-size", "64", "--out", model)
    assert rc == 0, err
    assert out.startswith("fastem MiniBatchGaussianMixture: 2 components")
    check_faithful_fit(out)
    est = persist.load(model)
    assert type(est).__name__ == "MiniBatchGaussianMixture"
    assert est.batch_size == 64
    rc, out, _ = run(capsys, "info", model)
    assert rc == 0 and "class: MiniBatchGaussianMixture" in out
    rc, out, err = run(capsys, "fit", files[0], "--online", "--chunk-size", "100")
    assert rc == 0, err
    assert "600 rows x 3 features" in out


# ---------------------------------------------------------------------------
# fastem select
# ---------------------------------------------------------------------------


def _select_rows(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("n_components"))
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return header, rows


def test_select_old_faithful(capsys, tmp_path):
    pytest.importorskip("fastem.selection")
    best = tmp_path / "best.npz"
    rc, out, err = run(capsys, "select", "-k", "1:3", "--types", "full,diag", "--out", best)
    assert rc == 0, err
    header, rows = _select_rows(out)
    assert header[:3] == ["n_components", "covariance_type", "bic"]
    assert {(int(r[0]), r[1]) for r in rows} == {(k, t) for k in (1, 2, 3)
                                                 for t in ("full", "diag")}
    for r in rows:
        assert re.fullmatch(r"-?\d+\.\d\d", r[2])
    starred = [r for r in rows if r[-1] == "*"]
    assert len(starred) == 1
    bics = [float(r[2]) for r in rows]
    assert float(starred[0][2]) == min(bics)
    assert "best: n_components=2, covariance_type='full'" in out
    check_faithful_fit(out[out.index("best:"):])
    assert type(persist.load(best)).__name__ == "GaussianMixture"


def test_select_one_column_and_plot(capsys, tmp_path):
    pytest.importorskip("fastem.selection")
    pytest.importorskip("matplotlib")
    png = tmp_path / "sel.png"
    rc, out, err = run(capsys, "select", "--columns", "eruptions", "-k", "1,2,3",
                       "--types", "full", "--criterion", "aic", "--plot", png)
    assert rc == 0, err
    assert "1 features (eruptions)" in out
    header, rows = _select_rows(out)
    assert header[2] == "aic" and len(rows) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_select_file(capsys, files):
    pytest.importorskip("fastem.selection")
    rc, out, err = run(capsys, "select", files[1], "-k", "2", "--types", "spherical",
                       "--criterion", "heldout", "--columns", "a,c")
    assert rc == 0, err
    header, rows = _select_rows(out)
    assert header[2] == "heldout" and len(rows) == 1 and rows[0][-1] == "*"


def test_select_structured_table(capsys, monkeypatch):
    """A select_model returning a structured array (no pandas) prints the same way."""
    gm = GaussianMixture(2, random_state=0).fit(load_old_faithful())
    calls = []

    def select_model(X, n_components, covariance_types, criterion, random_state, n_init,
                     init_params, skip_degenerate):
        calls.append((X.shape, list(n_components), covariance_types, criterion, n_init,
                      init_params, skip_degenerate))
        table = np.array([(1, "full", 2607.6199, np.nan), (2, "full", 2322.1912, np.nan)],
                         dtype=[("n_components", "i8"), ("covariance_type", "U9"),
                                ("bic", "f8"), ("heldout", "f8")])
        return types.SimpleNamespace(
            table=table, best_params_={"n_components": 2, "covariance_type": "full"},
            best_estimator_=gm, plot=lambda ax=None: ax)

    fake = types.ModuleType("fastem.selection")
    fake.select_model = select_model
    monkeypatch.setitem(sys.modules, "fastem.selection", fake)
    rc, out, _ = run(capsys, "select", "-k", "1:2", "--types", "full")
    assert rc == 0
    assert calls == [((272, 2), [1, 2], ["full"], "bic", 5, "auto", True)]
    header, rows = _select_rows(out)
    assert header == ["n_components", "covariance_type", "bic", "best"]  # NaN column hidden
    assert rows == [["1", "full", "2607.62"], ["2", "full", "2322.19", "*"]]


def test_select_missing_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastem.selection", None)
    msg = run_error(capsys, "select")
    assert msg.startswith("fastem select needs fastem.selection")


@pytest.mark.parametrize("value, message", [
    ("0", "numbers of components must be >= 1, got 0"),
    ("-2", "numbers of components must be >= 1"),
    ("0:3", "must be >= 1, got 0"),
    ("5:2", "A:B needs A <= B, got '5:2'"),
    ("a", "expected A:B, a comma-separated list or one positive integer, got 'a'"),
    ("1:b", "got '1:b'"),
    ("1,,2", "got '1,,2'"),
    ("1:2:3", "expected A:B, got '1:2:3'"),
])
def test_select_bad_k(capsys, value, message):
    line = argparse_error(capsys, "select", "-k", value)
    assert line.startswith("fastem select: error: argument -k/--n-components:")
    assert message in line


def test_select_bad_types(capsys):
    line = argparse_error(capsys, "select", "--types", "full,banana")
    assert "expected a comma-separated list of full, tied, diag, spherical" in line


def test_k_values_parser():
    assert cli._k_values("1:10") == range(1, 11)
    assert cli._k_values("3") == [3]
    assert cli._k_values("4, 2,4") == [4, 2]


# ---------------------------------------------------------------------------
# fastem bench
# ---------------------------------------------------------------------------


def test_bench_delegates_all_arguments(capsys, monkeypatch):
    received = []
    fake = types.ModuleType("fastem.bench")
    fake.main = lambda argv: received.append(argv) or 3
    monkeypatch.setitem(sys.modules, "fastem.bench", fake)
    assert cli.main(["bench", "--help", "-k", "3", "run"]) == 3
    assert cli.main(["bench"]) == 3
    assert received == [["--help", "-k", "3", "run"], []]
    fake.main = lambda argv: None
    assert cli.main(["bench", "x"]) == 0


def test_bench_missing_module(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastem.bench", None)
    msg = run_error(capsys, "bench", "--quick")
    assert msg.startswith("fastem bench needs fastem.bench")


def test_bench_help_is_the_bench_help(capsys):
    pytest.importorskip("fastem.bench")
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--help"])
    assert info.value.code == 0
    assert "usage: fastem bench" in capsys.readouterr().out


# ---------------------------------------------------------------------------
# Help, version
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["fit", "predict", "info", "sample", "select"])
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"fastem {command}" in out.split("examples:")[1]


def test_top_level_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("fit", "predict", "info", "sample", "select", "bench"):
        assert command in out
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"fastem \S+\n", capsys.readouterr().out)


# ---------------------------------------------------------------------------
# Errors: one line, exit code 2
# ---------------------------------------------------------------------------


def test_missing_data_file(capsys, tmp_path, model_file):
    missing = tmp_path / "nope.npy"
    assert run_error(capsys, "fit", missing) == f"no such file: {missing}"
    assert run_error(capsys, "select", missing) == f"no such file: {missing}"
    assert run_error(capsys, "predict", model_file, missing, "--out",
                     tmp_path / "l.npy") == f"no such file: {missing}"


def test_missing_model_file(capsys, tmp_path, files):
    missing = tmp_path / "nope.npz"
    expected = f"no such model file: {missing}"
    assert run_error(capsys, "info", missing) == expected
    assert run_error(capsys, "sample", missing, "-n", "3", "--out",
                     tmp_path / "s.npy") == expected
    assert run_error(capsys, "predict", missing, files[0], "--out",
                     tmp_path / "l.npy") == expected


@pytest.mark.parametrize("content", [b"not a model", b"PK\x03\x04broken zip"])
def test_corrupt_model_file(capsys, tmp_path, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    msg = run_error(capsys, "info", bad)
    assert msg.startswith(f"{bad} is not a fastem model file")


def test_truncated_model_file(capsys, tmp_path, model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    msg = run_error(capsys, "info", model_file)
    assert str(model_file) in msg


def test_data_file_given_as_model(capsys, files):
    msg = run_error(capsys, "info", files[0])
    assert msg.startswith(f"{files[0]} is not a fastem model file")


def test_wrong_number_of_columns(capsys, tmp_path, files, model_file):
    npy, csv = files
    msg = run_error(capsys, "predict", model_file, npy, "--out", tmp_path / "l.npy")
    assert msg == (f"{npy} has 3 columns, but the model in {model_file} expects 2 "
                   "features; select 2 with --columns")
    msg = run_error(capsys, "predict", model_file, csv, "--columns", "a",
                    "--out", tmp_path / "l.npy")
    assert msg == (f"{csv} has 1 column (after --columns), but the model in "
                   f"{model_file} expects 2 features; select 2 with --columns")
    assert not (tmp_path / "l.npy").exists()


def test_unknown_columns(capsys, files):
    npy, csv = files
    msg = run_error(capsys, "fit", csv, "--columns", "a,zz")
    assert msg == f"column 'zz' not found in {csv}; available columns: ['a', 'b', 'c']"
    msg = run_error(capsys, "fit", npy, "--columns", "a")
    assert "selected by name" in msg and "no column names" in msg
    msg = run_error(capsys, "fit", npy, "--columns", "0,7")
    assert "column index 7 is out of range" in msg
    msg = run_error(capsys, "fit", "--columns", "eruptions,height")
    assert msg == "column 'height' not found; the Old Faithful data has columns " \
                  "eruptions, waiting"
    msg = run_error(capsys, "fit", "--columns", "2")
    assert "column index 2 is out of range" in msg


@pytest.mark.parametrize("k", ["0", "-1", "x", "2.5"])
def test_fit_bad_k(capsys, k):
    line = argparse_error(capsys, "fit", "-k", k)
    assert line == f"fastem fit: error: argument -k/--n-components: expected a " \
                   f"positive integer, got {k!r}"


def test_fit_more_components_than_rows(capsys, tmp_path):
    small = tmp_path / "small.npy"
    np.save(small, np.arange(6.0).reshape(3, 2))
    msg = run_error(capsys, "fit", small, "-k", "5")
    assert msg == f"-k 5 needs at least 5 rows; {small} has 3"
    msg = run_error(capsys, "fit", "-k", "300")
    assert msg == "-k 300 needs at least 300 rows; Old Faithful (embedded, 272 " \
                  "eruptions) has 272"


def test_unsupported_and_unreadable_files(capsys, tmp_path):
    odd = tmp_path / "data.xyz"
    odd.write_text("1,2\n")
    assert "Unsupported file type '.xyz'" in run_error(capsys, "fit", odd)
    bad_npy = tmp_path / "bad.npy"
    bad_npy.write_bytes(b"\x93NUMPY garbage")
    assert str(bad_npy) in run_error(capsys, "fit", bad_npy)
    text = tmp_path / "words.csv"
    text.write_text("a,b\nx,y\nz,w\n")
    run_error(capsys, "fit", text)


def test_batch_size_needs_online(capsys):
    msg = run_error(capsys, "fit", "--batch-size", "10")
    assert msg == "--batch-size applies to --online fits only; add --online"


def test_argparse_errors_exit_2(capsys, tmp_path):
    assert "required: -n/--n-samples, --out" in argparse_error(capsys, "sample", "m.npz")
    assert "required: --out" in argparse_error(capsys, "predict", "m.npz", "d.npy")
    assert "invalid choice: 'banana'" in argparse_error(capsys, "fit",
                                                        "--covariance-type", "banana")
    assert "expected a positive integer, got '0'" in argparse_error(
        capsys, "sample", "m.npz", "-n", "0", "--out", "x.npy")
    assert "invalid choice" in argparse_error(capsys, "frobnicate")
    assert "required: COMMAND" in argparse_error(capsys)


def test_output_folder_missing(capsys, tmp_path, model_file, files):
    out = tmp_path / "nodir" / "x.npy"
    expected = f"cannot write {out}: the folder {out.parent} does not exist"
    assert run_error(capsys, "fit", "--out", out) == expected
    assert run_error(capsys, "fit", "--plot", out) == expected
    assert run_error(capsys, "predict", model_file, files[0], "--out", out) == expected
    assert run_error(capsys, "sample", model_file, "-n", "2", "--out", out) == expected
    assert run_error(capsys, "sample", model_file, "-n", "2", "--out", tmp_path / "s.npy",
                     "--labels", out) == expected
    assert run_error(capsys, "predict", model_file, files[0], "--out",
                     tmp_path) == f"cannot write {tmp_path}: it is a directory"


def test_csv_with_fewer_rows_than_components(capsys, tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4\n5,7\n")
    msg = run_error(capsys, "fit", small, "-k", "5")
    assert "n_components = 5, n_samples = 3" in msg


def test_argparse_error_is_one_line_without_usage(capsys):
    line = argparse_error(capsys, "fit", "-k", "0")
    assert line == ("fastem fit: error: argument -k/--n-components: expected a positive "
                    "integer, got '0'")
    assert argparse_error(capsys, "sample", "m.npz").startswith("fastem sample: error: ")
    assert argparse_error(capsys).startswith("fastem: error: ")


def _attr_key(meta, name):
    return meta["attributes"][name]["key"]


def test_tampered_model_in_a_subprocess(tmp_path, data3):
    """n_features_in_ edited to 2 while means_ is (2, 3): the kernels used to
    crash the process ('double free or corruption', exit 134)."""
    model = tmp_path / "m.npz"
    persist.save(GaussianMixture(2, random_state=0).fit(data3), model)
    tamper_model(model, lambda meta, arrays: meta["attributes"].update(
        {"n_features_in_": {"type": "int", "value": 2}}))
    data2 = tmp_path / "data2col.npy"
    np.save(data2, data3[:, :2])
    proc = subprocess.run(
        [sys.executable, "-m", "fastem.cli", "predict", str(model), str(data2),
         "--out", str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"fastem: error: {model}: field 'means_' has shape (2, 3) "
                                  "but n_components is 2 and n_features_in_ is 2")
    assert not (tmp_path / "x.npy").exists()


def _nan_means(meta, arrays):
    arrays[_attr_key(meta, "means_")] = arrays[_attr_key(meta, "means_")] * np.nan


def _means_1d(meta, arrays):
    arrays[_attr_key(meta, "means_")] = arrays[_attr_key(meta, "means_")][0]


def _negative_weights(meta, arrays):
    arrays[_attr_key(meta, "weights_")] = -arrays[_attr_key(meta, "weights_")]


def _huge_k(meta, arrays):
    meta["params"]["n_components"] = {"type": "int", "value": 10**12}


@pytest.mark.parametrize("edit, message", [
    (_nan_means, "field 'means_' holds NaN"),
    (_means_1d, "field 'means_' has shape (2,)"),
    (_negative_weights, "field 'weights_' holds a negative weight"),
    (_huge_k, "n_components=1000000000000"),
])
@pytest.mark.parametrize("command", ["info", "predict", "sample"])
def test_tampered_model_is_one_line(capsys, tmp_path, model_file, edit, message, command):
    tamper_model(model_file, edit)
    data = tmp_path / "d.npy"
    np.save(data, load_old_faithful())
    argv = {"info": ["info", model_file],
            "predict": ["predict", model_file, data, "--out", tmp_path / "l.npy"],
            "sample": ["sample", model_file, "-n", "5", "--out", tmp_path / "s.npy"]}
    msg = run_error(capsys, *argv[command])
    assert msg.startswith(f"{model_file}: ") and message in msg


def test_sample_too_many_is_one_line(capsys, tmp_path, model_file):
    out = tmp_path / "s.npy"
    msg = run_error(capsys, "sample", model_file, "-n", "10000000000", "--out", out)
    assert msg.startswith("-n 10000000000 samples x 2 features is 20000000000 values, "
                          "more than the limit")
    assert not out.exists()


def test_memory_error_is_one_line(capsys, tmp_path, model_file, monkeypatch):
    def no_memory(self, n_samples=1):
        raise MemoryError("Unable to allocate 7.28 TiB for an array with shape "
                          "(1000000000000,) and data type float64")

    monkeypatch.setattr(GaussianMixture, "sample", no_memory)
    msg = run_error(capsys, "sample", model_file, "-n", "5", "--out", tmp_path / "s.npy")
    assert msg == ("out of memory (Unable to allocate 7.28 TiB for an array with shape "
                   "(1000000000000,) and data type float64)")
    monkeypatch.setattr(GaussianMixture, "sample",
                        lambda self, n_samples=1: (_ for _ in ()).throw(MemoryError()))
    assert run_error(capsys, "sample", model_file, "-n", "5", "--out",
                     tmp_path / "s.npy") == "out of memory"


def test_unexpected_error_is_one_line(capsys, tmp_path, model_file, monkeypatch):
    def broken(self, n_samples=1):
        raise RuntimeError("something\nwent wrong")

    monkeypatch.setattr(GaussianMixture, "sample", broken)
    msg = run_error(capsys, "sample", model_file, "-n", "5", "--out", tmp_path / "s.npy")
    assert msg == "RuntimeError: something went wrong"


def test_interrupt_is_one_line(capsys, tmp_path, model_file, monkeypatch):
    def interrupted(self, n_samples=1):
        raise KeyboardInterrupt

    monkeypatch.setattr(GaussianMixture, "sample", interrupted)
    rc, _, err = run(capsys, "sample", model_file, "-n", "5", "--out", tmp_path / "s.npy")
    assert rc == 130 and err == "fastem: interrupted\n"
