"""Record, or check, a corpus of fits: every covariance type x dtype x driver.

Used to prove that a restructure changes no result: record the corpus on the
commit before, check it on the commit after.  Every fitted attribute (public
and private, arrays and scalars, the online state) is compared **bitwise**.

    python tools/fit_corpus.py record corpus.npz
    python tools/fit_corpus.py check corpus.npz      # exit 1 on any difference

Drivers: in-memory ``fit``; streamed ``.npy``, CSV and Parquet files;
``MiniBatchGaussianMixture.fit`` and ``partial_fit``; Dask (synchronous
scheduler); ``select_model`` (shared passes); with and without sample
weights.  Bits depend on the CPU (Numba compiles for it): record and check on
the same machine.
"""

import os
import sys
import tempfile
import warnings

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
DTYPES = ("float64", "float32")


def _data(dtype, n=6000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, d))
    X = np.concatenate([c + rng.normal(size=(n // 3, d)) @ rng.normal(size=(d, d)) * 0.5
                        for c in centres])
    X = X[rng.permutation(len(X))]
    w = rng.uniform(0.5, 2.0, size=len(X))
    return X.astype(dtype), w


def _attributes(est, prefix):
    out = {}
    for name, value in sorted(vars(est).items()):
        if not name.endswith("_") and not name.startswith("_"):
            continue
        key = f"{prefix}/{name}"
        if isinstance(value, np.ndarray):
            out[key] = value
        elif isinstance(value, (bool, int, float, np.floating, np.integer)):
            out[key] = np.asarray(value)
        elif isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            out[key] = np.asarray(value, dtype=np.float64)
        elif hasattr(value, "__slots__") and hasattr(value, "nk"):
            for slot in value.__slots__:
                v = getattr(value, slot)
                if isinstance(v, (np.ndarray, float, int)):
                    out[f"{key}.{slot}"] = np.asarray(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, (np.ndarray, float, int)):
                    out[f"{key}[{k}]"] = np.asarray(v)
    return out


def corpus():
    import fastem
    from fastem.selection import select_model

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dt in DTYPES:
            X, w = _data(dt)
            npy = os.path.join(tmp, f"x_{dt}.npy")
            np.save(npy, X)
            csv = os.path.join(tmp, f"x_{dt}.csv")
            np.savetxt(csv, X, delimiter=",", fmt="%.17g" if dt == "float64" else "%.9g",
                       header="a,b,c", comments="")
            pq = os.path.join(tmp, f"x_{dt}.parquet")
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq_mod

                pq_mod.write_table(pa.table({n: X[:, i] for i, n in enumerate("abc")}), pq)
            except ImportError:
                pq = None
            for ct in COVARIANCE_TYPES:
                opts = dict(n_components=3, covariance_type=ct, random_state=0, tol=0,
                            max_iter=8)
                tag = f"{ct}/{dt}"
                gm = fastem.GaussianMixture(**opts).fit(X)
                results.update(_attributes(gm, f"memory/{tag}"))
                gm = fastem.GaussianMixture(**opts).fit(X, sample_weight=w)
                results.update(_attributes(gm, f"memory-weighted/{tag}"))
                gm = fastem.GaussianMixture(**opts, chunk_size=4096).fit(npy)
                results.update(_attributes(gm, f"npy/{tag}"))
                gm = fastem.GaussianMixture(**opts, chunk_size=4096).fit(
                    fastem.io.chunks(csv, chunk_size=4096, dtype=dt))
                results.update(_attributes(gm, f"csv/{tag}"))
                if pq is not None:
                    gm = fastem.GaussianMixture(**opts, chunk_size=4096).fit(
                        fastem.io.chunks(pq, chunk_size=4096, dtype=dt))
                    results.update(_attributes(gm, f"parquet/{tag}"))
                mb = fastem.MiniBatchGaussianMixture(3, covariance_type=ct, random_state=0,
                                                     batch_size=1024, max_iter=2).fit(X)
                results.update(_attributes(mb, f"online-fit/{tag}"))
                mb = fastem.MiniBatchGaussianMixture(3, covariance_type=ct, random_state=0)
                for lo in range(0, 4096, 1024):
                    mb.partial_fit(X[lo:lo + 1024])
                results.update(_attributes(mb, f"online-partial/{tag}"))
                try:
                    import dask
                    import dask.array as da

                    with dask.config.set(scheduler="synchronous"):
                        gm = fastem.GaussianMixture(**opts).fit(
                            da.from_array(X, chunks=(2048, 3)))
                    results.update(_attributes(gm, f"dask/{tag}"))
                except ImportError:
                    pass
            sel = select_model(X, n_components=[1, 2, 3], random_state=0)
            for (k, ct), est in sorted(sel.estimators_.items()):
                results.update(_attributes(est, f"select-memory/{k}/{ct}/{dt}"))
            sel = select_model(npy, n_components=[1, 2, 3], random_state=0)
            for (k, ct), est in sorted(sel.estimators_.items()):
                results.update(_attributes(est, f"select-npy/{k}/{ct}/{dt}"))
    return results


def main(argv):
    if len(argv) != 3 or argv[1] not in ("record", "check"):
        print(__doc__)
        return 2
    warnings.simplefilter("ignore")
    res = corpus()
    if argv[1] == "record":
        np.savez(argv[2], **res)
        print(f"recorded {len(res)} attributes to {argv[2]}")
        return 0
    ref = np.load(argv[2])
    bad = []
    for key in sorted(set(ref.files) | set(res)):
        if key not in ref.files or key not in res:
            bad.append(f"{key}: {'missing now' if key not in res else 'new'}")
            continue
        a, b = ref[key], np.asarray(res[key])
        if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
            bad.append(f"{key}: differs")
    for line in bad:
        print(line)
    print(f"checked {len(ref.files)} attributes: "
          + ("all bitwise identical" if not bad else f"{len(bad)} differ"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
