"""Data and models for the ``fastem`` tool: loading, output checks, optional modules."""

import importlib
import os

import numpy as np

from ._args import CLIError


def _check_path(path):
    base = path.split("::")[0]
    if not os.path.exists(base):
        raise CLIError(f"no such file: {base}")


def _old_faithful(columns):
    from ..datasets import OLD_FAITHFUL_COLUMNS, load_old_faithful

    names = list(OLD_FAITHFUL_COLUMNS)
    if columns is not None:
        names = []
        for c in columns:
            if isinstance(c, int):
                if not 0 <= c < len(OLD_FAITHFUL_COLUMNS):
                    raise CLIError(f"column index {c} is out of range; the Old Faithful "
                                   f"data has columns 0..{len(OLD_FAITHFUL_COLUMNS) - 1}")
                c = OLD_FAITHFUL_COLUMNS[c]
            if c not in OLD_FAITHFUL_COLUMNS:
                raise CLIError(f"column {c!r} not found; the Old Faithful data has "
                               f"columns {', '.join(OLD_FAITHFUL_COLUMNS)}")
            names.append(c)
    return load_old_faithful(names), "Old Faithful (embedded, 272 eruptions)", names


def _open_source(path, columns=None, chunk_size=None):
    """A ChunkSource over a data file, and its feature names."""
    from .. import io

    _check_path(path)
    src = io.chunks(path, chunk_size=chunk_size, columns=columns)
    return src, _source_names(src)


def _source_names(src):
    names = getattr(getattr(src, "_backend", None), "column_names", None)
    if names is not None and len(names) == src.n_features:
        return [str(n) for n in names]
    if src.columns is not None and len(src.columns) == src.n_features:
        return [c if isinstance(c, str) else f"x{c}" for c in src.columns]
    return [f"x{i}" for i in range(src.n_features)]


def load_data(path, columns=None, chunk_size=None):
    """Read a data file (or the Old Faithful data) into memory.

    Returns (X, name, feature_names).
    """
    if path is None:
        return _old_faithful(columns)
    src, names = _open_source(path, columns, chunk_size)
    blocks = list(src)
    X = np.concatenate(blocks, axis=0) if blocks else np.empty((0, src.n_features))
    return X, path, names


def _load_model(path):
    from .. import persist

    if not os.path.exists(path):
        raise CLIError(f"no such model file: {path}")
    return persist.load(path)


def _model_features(model, path):
    d = getattr(model, "n_features_in_", None)
    if d is None or not hasattr(model, "means_"):
        raise CLIError(f"the model in {path} is not fitted")
    return int(d)


def _model_and_source(args):
    """The fitted model of ``args.model`` and the chunk source of ``args.path``
    (its column names too), checked to have the model's number of features."""
    model = _load_model(args.model)
    d = _model_features(model, args.model)
    src, names = _open_source(args.path, args.columns, args.chunk_size)
    if src.n_features != d:
        raise CLIError(
            f"{args.path} has {src.n_features} column{'s' if src.n_features != 1 else ''}"
            f"{' (after --columns)' if args.columns is not None else ''}, but the model "
            f"in {args.model} expects {d} features; select {d} with --columns")
    return model, src, names


def _model_names(model):
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(model.means_.shape[1])]


def _check_outputs(*paths):
    """Fail before any work when an output file cannot be created."""
    for path in paths:
        if path is None:
            continue
        if os.path.isdir(path):
            raise CLIError(f"cannot write {path}: it is a directory")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise CLIError(f"cannot write {path}: the folder {folder} does not exist")


def _write_npy(path, array):
    """np.save to exactly this path (np.save would append .npy to a bare name)."""
    with open(path, "wb") as f:
        np.save(f, array)


def _import_optional(module, what):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module or (exc.name is None and module in str(exc)):
            raise CLIError(f"{what} needs {module}, which this installation of "
                           "fastem does not have") from None
        raise
