"""The ``impute`` command of the ``fastem`` tool: fill the missing entries of a
data file under a saved model."""

import numpy as np

from ._args import CLIError
from ._data import _check_outputs, _model_and_source


def cmd_impute(args):
    """Read PATH chunk by chunk, fill each chunk's NaN entries (empty CSV
    cells, Parquet nulls) with the model's conditional means (or one draw
    from the conditional distribution with ``--draw``), and write the rows to
    a CSV (``.csv``/``.tsv``/``.txt``) or ``.npy`` file."""
    out = args.out
    ext = out.lower().rsplit(".", 1)[-1] if "." in out else ""
    if ext not in ("csv", "tsv", "txt", "npy"):
        raise CLIError(f"--out {out}: the output must be a .csv, .tsv, .txt or .npy file")
    _check_outputs(out)
    model, src, names = _model_and_source(args)
    rng = np.random.RandomState(args.random_state)
    method = "sample" if args.draw else "mean"
    n_rows = n_filled = 0
    parts = []
    sep = "\t" if ext == "tsv" else ","
    with open(out, "w", encoding="utf-8") if ext != "npy" else _NoFile() as f:
        if ext != "npy":
            f.write(sep.join(names) + "\n")
        for start, block in _blocks(src):
            filled = model.impute(block, method=method, random_state=rng)
            n_filled += int(np.isnan(block).sum())
            n_rows += block.shape[0]
            if ext == "npy":
                parts.append(np.asarray(filled, dtype=np.float64))
            else:
                np.savetxt(f, filled, delimiter=sep, fmt="%.17g")
    if ext == "npy":
        from ._data import _write_npy

        _write_npy(out, np.concatenate(parts) if parts else np.empty((0, src.n_features)))
    how = "draws from the conditional distribution" if args.draw else "conditional means"
    print(f"imputed {n_filled} missing entries in {n_rows} rows of {args.path} "
          f"({how}); written to {out}")
    return 0


def _blocks(src):
    for _, start, block in src.iter_with_offsets():
        yield start, block


class _NoFile:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
