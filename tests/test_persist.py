"""fastem.persist: exact, pickle-free save/load of estimators."""

import inspect
import json
import math
import os
import pickle
import re
import struct
import zipfile

import numpy as np
import pytest

from fastem import GaussianMixture, GaussianParams, SuffStats, persist
from fastem.persist import load, save

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def assert_identical(a, b, where="value"):
    """Same type and bitwise the same content, recursively."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
        if a.dtype == object:
            assert a.tolist() == b.tolist(), where
        else:
            assert a.tobytes() == b.tobytes(), f"{where}: array bytes differ"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} != {b.dtype}"
        assert a.tobytes() == b.tobytes(), f"{where}: scalar bits differ"
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, np.random.RandomState):
        assert_identical(a.get_state(), b.get_state(), f"{where}.get_state()")
    elif isinstance(a, np.random.Generator):
        assert_identical(a.bit_generator.state, b.bit_generator.state, f"{where}.state")
    elif isinstance(a, SuffStats):
        for f in SuffStats.__slots__:
            assert_identical(getattr(a, f), getattr(b, f), f"{where}.{f}")
    elif isinstance(a, GaussianParams):
        for f in ("covariance_type", "weights", "means", "covariances",
                  "precisions_cholesky"):
            assert_identical(getattr(a, f), getattr(b, f), f"{where}.{f}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def saved_names(est):
    return [n for n in est._persist_attributes() if hasattr(est, n)]


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert_identical(a.get_params(deep=False), b.get_params(deep=False), "params")
    names = saved_names(a)
    assert names == saved_names(b)
    for name in names:
        assert_identical(getattr(a, name), getattr(b, name), name)


def rewrite(path, edit_meta=None, extra=None, out=None):
    """Copy a model file, editing its metadata dict and adding entries."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes().decode("utf-8"))
    if edit_meta is not None:
        edit_meta(meta)
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays.update(extra or {})
    out = out or path
    with open(out, "wb") as f:
        np.savez(f, **arrays)
    return out


def _blobs(dtype=np.float64, n=400, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -3.0], [-2.0, 6.0, 3.0]])
    labels = rng.integers(0, 3, size=n)
    return (centers[labels] + rng.normal(size=(n, 3))).astype(dtype)


@pytest.fixture(scope="module")
def X():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(X):
    return GaussianMixture(3, random_state=0).fit(X)


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_exact(tmp_path, covariance_type, dtype):
    X = _blobs(dtype)
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=1).fit(X)
    path = tmp_path / "model.npz"
    save(gm, path)
    gm2 = load(path)
    assert_same_model(gm, gm2)
    for name in ("weights_", "means_", "covariances_", "precisions_",
                 "precisions_cholesky_", "converged_", "n_iter_", "lower_bound_",
                 "lower_bounds_", "n_features_in_"):
        assert hasattr(gm2, name), name
    assert not hasattr(gm2, "feature_names_in_")
    np.testing.assert_array_equal(gm2.predict(X), gm.predict(X))
    assert gm2.predict_proba(X).tobytes() == gm.predict_proba(X).tobytes()
    assert gm2.score_samples(X).tobytes() == gm.score_samples(X).tobytes()
    assert gm2.bic(X) == gm.bic(X)


def test_params_preserved(tmp_path, X):
    K = 3
    gm = GaussianMixture(
        K, covariance_type="diag", tol=1e-5, reg_covar=1e-4, max_iter=50, n_init=2,
        init_params="random_from_data", weights_init=[0.2, 0.3, 0.5],
        means_init=np.array([[0.0, 0.0, 0.0], [5.0, 1.0, -3.0], [-2.0, 6.0, 3.0]]),
        precisions_init=np.ones((K, 3)), random_state=12, warm_start=True, verbose=0,
        verbose_interval=3, n_jobs=1, chunk_size=128)
    path = tmp_path / "p.npz"
    save(gm, path)  # unfitted: parameters only
    gm2 = load(path)
    assert_identical(gm.get_params(deep=False), gm2.get_params(deep=False), "params")
    assert not hasattr(gm2, "means_")
    gm.fit(X)
    gm2.fit(X)
    assert_same_model(gm, gm2)


def test_random_state_preserved(tmp_path, X):
    rs = np.random.RandomState(7)
    rs.standard_normal(3)  # a state with a cached Gaussian
    gm = GaussianMixture(3, random_state=rs).fit(X)
    path = tmp_path / "rs.npz"
    save(gm, path)
    gm2 = load(path)
    assert isinstance(gm2.random_state, np.random.RandomState)
    assert gm2.random_state is not rs
    assert_identical(gm.random_state.get_state(), gm2.random_state.get_state())
    Xa, ya = gm.sample(50)
    Xb, yb = gm2.sample(50)
    assert Xa.tobytes() == Xb.tobytes()
    np.testing.assert_array_equal(ya, yb)


def test_feature_names_round_trip(tmp_path, X):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X, columns=["a", "b", "é"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    save(gm, tmp_path / "f.npz")
    gm2 = load(tmp_path / "f.npz")
    assert_identical(gm.feature_names_in_, gm2.feature_names_in_, "feature_names_in_")
    np.testing.assert_array_equal(gm2.predict(df), gm.predict(df))


class _Extra(GaussianMixture):
    """A GaussianMixture whose extra attributes hold every supported kind of value."""


def _all_kinds():
    rs = np.random.RandomState(3)
    rs.standard_normal()
    gen = np.random.default_rng(5)
    gen.random(3)
    f = np.arange(6, dtype=np.float32).reshape(2, 3, order="F")
    ref = np.arange(6.0).reshape(2, 3)
    stats = SuffStats("diag", [1.5, 2.5], np.ones((2, 3)) / 3, np.full((2, 3), 0.1), ref,
                      ref2=np.array([0.1, 0.2, 0.3]), loglik=-12.345678901234567,
                      weight_sum=4.0, n_rows=4)
    params = GaussianParams("spherical", np.array([0.25, 0.75]), ref, np.array([1.0, 2.0]),
                            1 / np.sqrt([1.0, 2.0]))
    return {
        "none_": None, "true_": True, "false_": False, "int_": 7, "big_int_": 2**80,
        "neg_int_": -3, "float_": 0.1, "tiny_": 5e-324, "negzero_": -0.0,
        "inf_": math.inf, "ninf_": -math.inf, "nan_": math.nan,
        "nan_neg_": struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000123))[0],
        "str_": "unicode: é ∞", "empty_str_": "",
        "list_": [1, 2.5, -math.inf, "x", None, [True, (1, 2)]], "tuple_": (0.1, 0.2),
        "empty_list_": [], "dict_": {"a": 1, "b": [0.5, np.float32(2.5)]},
        "f32_": np.float32(1.1), "i8_": np.int8(-5), "u64_": np.uint64(2**64 - 1),
        "bool_np_": np.bool_(True), "f64_": np.float64(np.nan),
        "arr_f_": f, "arr_empty_": np.empty((0, 4)), "arr_0d_": np.array(3.5),
        "arr_u_": np.array(["eruptions", "waiting"]), "arr_s_": np.array([b"ab", b"c"]),
        "arr_bool_": np.array([True, False]), "arr_c_": np.array([1 + 2j]),
        "arr_be_": np.arange(3, dtype=">f8"),
        "arr_obj_str_": np.array(["x", "y"], dtype=object),
        "rs_": rs, "gen_": gen, "gen_mt_": np.random.Generator(np.random.MT19937(4)),
        "_stats": stats, "_params": params,
    }


def test_every_kind_of_value_round_trips(tmp_path, monkeypatch, X):
    values = _all_kinds()
    gm = GaussianMixture(2, random_state=0).fit(X)
    for k, v in values.items():
        setattr(gm, k, v)
    base = gm._persist_attributes()
    monkeypatch.setattr(GaussianMixture, "_persist_attributes",
                        lambda self: base + list(values) + ["missing_attr_"])
    save(gm, tmp_path / "all.npz")
    gm2 = load(tmp_path / "all.npz")
    assert not hasattr(gm2, "missing_attr_")
    for k, v in values.items():
        assert_identical(v, getattr(gm2, k), k)
    # the restored random generators continue the same streams
    assert gm2.rs_.standard_normal() == values["rs_"].standard_normal()
    assert gm2.gen_.random() == values["gen_"].random()
    assert gm2.arr_f_.flags.f_contiguous


def test_persist_attributes_contract_is_used(tmp_path, monkeypatch, X):
    gm = GaussianMixture(2, random_state=0).fit(X)
    # a fitted model must be saved whole (load refuses a partial parameter
    # set), but nothing beyond the names listed is written
    names = ["weights_", "means_", "covariances_", "precisions_",
             "precisions_cholesky_", "n_features_in_", "n_iter_"]
    monkeypatch.setattr(GaussianMixture, "_persist_attributes", lambda self: names)
    save(gm, tmp_path / "m.npz")
    gm2 = load(tmp_path / "m.npz")
    assert_identical(gm.means_, gm2.means_)
    assert gm2.n_iter_ == gm.n_iter_
    assert not hasattr(gm2, "lower_bound_")
    assert not hasattr(gm2, "converged_")


def test_minibatch_round_trip_and_resume(tmp_path, X):
    online = pytest.importorskip("fastem.online")
    est = online.MiniBatchGaussianMixture(3, batch_size=100, random_state=0)
    est.partial_fit(X[:200]).partial_fit(X[200:300])
    save(est, tmp_path / "online.npz")
    est2 = load(tmp_path / "online.npz")
    assert type(est2) is online.MiniBatchGaussianMixture
    assert_same_model(est, est2)
    # the online state is restored: training goes on identically
    est.partial_fit(X[300:])
    est2.partial_fit(X[300:])
    assert_same_model(est, est2)


def test_save_writes_exactly_the_given_path(tmp_path, fitted):
    path = tmp_path / "model"  # no .npz suffix: nothing is appended
    save(fitted, str(path))
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert zipfile.is_zipfile(path)
    assert_same_model(fitted, load(str(path)))


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path, fitted, X):
    path = tmp_path / "m.npz"
    path.write_bytes(b"old content")
    save(fitted, path)
    save(fitted, path)
    assert os.listdir(tmp_path) == ["m.npz"]
    assert_same_model(fitted, load(path))


def test_file_holds_no_pickles_and_readable_metadata(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            assert z[key].dtype != object
        meta = json.loads(z["__meta__"].tobytes().decode("utf-8"))
    assert meta["format"] == "fastem-model"
    assert meta["format_version"] == 1
    assert meta["class"] == "GaussianMixture"
    assert meta["fastem_version"]
    assert meta["params"]["n_components"] == {"type": "int", "value": 3}
    assert meta["attributes"]["lower_bound_"] == {
        "type": "float", "value": repr(fitted.lower_bound_)}


def test_convenience_wrappers(tmp_path, fitted):
    import fastem

    if not hasattr(fitted, "save") or not hasattr(fastem, "load"):
        pytest.skip("est.save / fastem.load not added yet")
    fitted.save(tmp_path / "w.npz")
    assert_same_model(fitted, fastem.load(tmp_path / "w.npz"))


# ---------------------------------------------------------------------------
# What cannot be saved
# ---------------------------------------------------------------------------


def test_save_refuses_unsupported_values(tmp_path, monkeypatch, fitted):
    monkeypatch.setattr(GaussianMixture, "_persist_attributes", lambda self: ["bad_"])
    fitted.bad_ = object()
    with pytest.raises(TypeError, match="attribute 'bad_'.*object"):
        save(fitted, tmp_path / "m.npz")
    fitted.bad_ = np.array([1, "a", None], dtype=object)
    with pytest.raises(TypeError, match="without pickling"):
        save(fitted, tmp_path / "m.npz")
    del fitted.bad_
    assert not os.listdir(tmp_path)


def test_save_refuses_other_classes(tmp_path, X):
    with pytest.raises(TypeError, match="save supports GaussianMixture"):
        save(_Extra(2).fit(X), tmp_path / "m.npz")
    from sklearn.mixture import GaussianMixture as SkGM

    with pytest.raises(TypeError, match="sklearn"):
        save(SkGM(2), tmp_path / "m.npz")


# ---------------------------------------------------------------------------
# Files that are refused, with messages naming the file
# ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.npz")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, not a model", b"PK\x03\x04garbage"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_plain_npy_and_npz_are_refused(tmp_path):
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match=re.escape(str(npy)) + ".*not a fastem model"):
        load(npy)
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.arange(3))
    with pytest.raises(ValueError, match=re.escape(str(npz)) + ".*not a fastem model"):
        load(npz)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, fitted, fraction):
    path = tmp_path / "m.npz"
    save(fitted, path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


def test_corrupted_bytes(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    data = bytearray(path.read_bytes())
    # flip bytes inside the first array's data: the zip CRC check fails
    start = data.index(b"arr_0.npy") + 200
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)


_EXECUTED = []


def _record_execution():
    _EXECUTED.append(True)
    return "owned"


class _Evil:
    def __reduce__(self):
        return (_record_execution, ())


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load(path)
    assert not _EXECUTED


def test_pickled_object_array_is_refused(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    evil = np.array([_Evil()], dtype=object)

    def point_at_evil(meta):
        meta["attributes"]["means_"] = {"type": "array", "key": "evil"}

    rewrite(path, point_at_evil, extra={"evil": evil})
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*pickled object array"):
        load(path)
    assert not _EXECUTED


def test_newer_format_version(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)

    def bump(meta):
        meta["format_version"] = 2
        meta["fastem_version"] = "9.0"

    rewrite(path, bump)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*format version 2.*"
                       r"fastem 9\.0.*reads format version 1.*Upgrade fastem"):
        load(path)


def test_unknown_class(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    rewrite(path, lambda meta: meta.update({"class": "os:system"}))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*unknown class 'os:system'"
                       ".*GaussianMixture, MiniBatchGaussianMixture"):
        load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update({"format": "something-else"}), "not a fastem model file"),
    (lambda m: m.update({"format_version": "1"}), "invalid format version"),
    (lambda m: m.pop("attributes"), "no 'attributes' mapping"),
    (lambda m: m["attributes"].update({"means_": {"type": "array", "key": "arr_99"}}),
     "missing array entry 'arr_99'"),
    (lambda m: m["attributes"].update({"means_": {"type": "exec", "value": "rm"}}),
     "unknown value type 'exec'"),
    (lambda m: m["attributes"].update({"n_iter_": {"type": "int", "value": "3"}}),
     "expected a int"),
    (lambda m: m["attributes"].update({"lower_bound_": {"type": "float", "value": "x"}}),
     "malformed float"),
    (lambda m: m["attributes"].update({"__class__": {"type": "none"}}),
     "invalid attribute name '__class__'"),
    (lambda m: m["params"].update({"evil_param": {"type": "int", "value": 1}}),
     r"parameters \['evil_param'\]"),
    (lambda m: m["params"].update({"random_state": {"type": "random_state",
                                                    "bit_generator": "MT19937",
                                                    "keys": "arr_0", "pos": 0,
                                                    "has_gauss": 0}}),
     "malformed float"),
])
def test_corrupt_metadata(tmp_path, fitted, edit, message):
    path = tmp_path / "m.npz"
    save(fitted, path)
    rewrite(path, edit)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        load(path)


def test_metadata_not_json(tmp_path, fitted):
    path = tmp_path / "m.npz"
    save(fitted, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__meta__"] = np.frombuffer(b"{not json", dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*not valid JSON"):
        load(path)


def test_module_never_allows_pickle():
    source = inspect.getsource(persist)
    assert "allow_pickle=True" not in source
    assert not re.search(r"^\s*(import|from)\s+(pickle|cloudpickle|joblib)\b", source, re.M)
    uses = re.findall(r"allow_pickle\s*=\s*(\w+)", source)
    assert uses and set(uses) == {"False"}
    # every np.load call passes allow_pickle=False
    for call in re.findall(r"np\.load\(([^)]*)\)", source):
        assert "allow_pickle=False" in call, call
    assert "eval(" not in source and "exec(" not in source


def test_save_into_missing_folder(tmp_path, fitted):
    target = tmp_path / "nodir" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        save(fitted, target)
    assert info.value.filename == str(target)
