"""Save fitted fastem estimators to one ``.npz`` file and load them back.

The file is a plain NumPy ``.npz`` archive (a zip of ``.npy`` files), written
with :func:`numpy.savez` and read entry by entry with
``numpy.lib.format.read_array(..., allow_pickle=False)`` after the entry's
header has been checked. It never contains pickled objects, so loading a
file never runs code from it:

- every array (fitted parameters, array-valued constructor parameters, the
  arrays inside sufficient statistics or a random state) is one entry
  ``arr_<i>`` of the archive, with its dtype, shape and bytes kept exactly;
- the entry ``__meta__`` is a uint8 array holding a UTF-8 JSON document::

      {"format": "fastem-model", "format_version": 1,
       "fastem_version": "0.1.0", "class": "GaussianMixture",
       "params": {name: value, ...}, "attributes": {name: value, ...}}

  where each value is a small tagged object saying how to rebuild it, e.g.
  ``{"type": "float", "value": "0.001"}``, ``{"type": "array", "key":
  "arr_3"}``, ``{"type": "random_state", ...}``, ``{"type": "suffstats",
  "fields": {...}}``.

Python floats are written with ``repr`` (which round-trips exactly), as
strings so that ``inf`` and ``nan`` stay valid JSON; a NaN also keeps its bit
pattern. Integers of any size are JSON integers.

Which attributes are saved is decided by the estimator: its
``_persist_attributes()`` method returns their names (attributes missing on
the object are skipped). Constructor parameters come from
``get_params(deep=False)``. The class is looked up by name in a fixed
registry, :data:`CLASSES`, and imported only then.

:func:`load` validates what it reads (:func:`validate_model`): array sizes
from their headers before anything is allocated, then the shapes and values
of the fitted parameters and of the online state. A tampered or corrupt file
raises ValueError naming the file and the field; it never reaches the
kernels.

Examples
--------
>>> from fastem import GaussianMixture
>>> from fastem.datasets import load_old_faithful
>>> from fastem.persist import load, save
>>> gm = GaussianMixture(2, random_state=0).fit(load_old_faithful())
>>> save(gm, "faithful.npz")                              # doctest: +SKIP
>>> gm2 = load("faithful.npz")                            # doctest: +SKIP
"""

import json
import os

import numpy as np

from ._archive import MAX_ELEMENTS, _read_archive
from ._archive import MAX_METADATA_BYTES as MAX_METADATA_BYTES
from ._format import (
    _META_KEY,
    CLASSES,
    FORMAT_NAME,
    FORMAT_VERSION,
    _attribute_names,
    _class_name,
    _Encoder,
    _valid_attribute_name,
)
from ._save import STALE_AFTER_S as STALE_AFTER_S
from ._save import STALE_DEAD_PID_AFTER_S as STALE_DEAD_PID_AFTER_S
from ._save import TMP_SUFFIX as TMP_SUFFIX
from ._save import _write_atomically
from ._validate import validate_model

__all__ = ["CLASSES", "FORMAT_NAME", "FORMAT_VERSION", "MAX_ELEMENTS", "load", "save",
           "validate_model"]


def save(estimator, path):
    """Save an estimator (fitted or not) to one ``.npz`` file.

    Parameters
    ----------
    estimator : GaussianMixture, MiniBatchGaussianMixture, BayesianGaussianMixture or
        MiniBatchBayesianGaussianMixture
        Its constructor parameters (``get_params(deep=False)``) and the
        attributes named by its ``_persist_attributes()`` that it has are
        saved.
    path : str or os.PathLike
        The file to write, exactly as given: unlike :func:`numpy.savez`, no
        ``.npz`` suffix is appended when the name lacks one. The file is
        written to a temporary file ``.<name>.<pid>.<random>.fastem-tmp`` in
        the same folder, flushed to disk and then renamed, so an existing
        file is replaced only by a complete one; the temporary file is
        removed when the save fails or is interrupted, and those left by
        saves of the same target that crashed are removed (see
        :func:`_remove_stale_tmp_files`). A symbolic link is followed: the
        file it points to is replaced and the link kept. A new file gets
        the mode ``open()`` would give it (0666 less the umask); a replaced
        file keeps its mode.

    Raises
    ------
    TypeError
        For an estimator of another class, or an attribute or parameter
        value of a type that cannot be saved without pickling.
    OSError
        When the file cannot be written; the error names ``path``.

    Notes
    -----
    Read the file back with :func:`load`. Arrays keep their dtype, shape and
    bytes; floats, ints, strings, random states and sufficient statistics
    are restored exactly.
    """
    from .. import __version__

    class_name = _class_name(estimator)
    enc = _Encoder()
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        params[name] = enc.encode(value, f"parameter {name!r}")
    attributes = {}
    for name in _attribute_names(estimator):
        if name in attributes or not hasattr(estimator, name):
            continue
        attributes[name] = enc.encode(getattr(estimator, name), f"attribute {name!r}")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fastem_version": __version__,
        "class": class_name,
        "params": params,
        "attributes": attributes,
    }
    text = json.dumps(meta, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    arrays = dict(enc.arrays)
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    _write_atomically(os.fspath(path), lambda f: np.savez(f, **arrays))


def load(path):
    """Load an estimator saved with :func:`save`, checking that it is valid.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    estimator : GaussianMixture, MiniBatchGaussianMixture, BayesianGaussianMixture or
        MiniBatchBayesianGaussianMixture
        A new estimator with the saved parameters and attributes.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file, when it is not a fastem model file, is truncated or
        corrupt, holds pickled data, has a newer format version than this
        fastem reads, names an unknown class, or holds a model that is not
        valid (see :func:`validate_model`).

    Notes
    -----
    The file is read without unpickling: loading never executes code stored
    in it. The size of every array is checked from its header before the
    array is allocated (at most :data:`MAX_ELEMENTS` elements, and no more
    bytes than the file holds), and the decoded model is checked by
    :func:`validate_model` before it is returned.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a fastem model file")
    # Open the file here so that it is closed on every error.
    with open(path, "rb") as fh:
        class_name, cls, params, attributes = _read_archive(fh, path)
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{path} sets parameters {unknown} that {cls.__name__} of this fastem does "
            "not have; was it saved by a newer fastem?")
    for name in attributes:
        if not _valid_attribute_name(name):
            raise ValueError(f"{path} is corrupt: invalid attribute name {name!r:.80}")
    try:
        estimator = cls(**params)
    except Exception as exc:  # noqa: BLE001 -- a constructor refusing the values
        raise ValueError(f"{path}: cannot build a {cls.__name__} from its parameters "
                         f"({type(exc).__name__}: {exc})") from None
    allowed = set(_attribute_names(estimator))
    extra = sorted(set(attributes) - allowed)
    if extra:
        raise ValueError(
            f"{path} sets attributes {extra} that {cls.__name__} of this fastem does "
            "not save; was it saved by a newer fastem, or edited?")
    validate_model(estimator, attributes, path, online=class_name == "MiniBatchGaussianMixture")
    for name, value in attributes.items():
        try:
            setattr(estimator, name, value)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: cannot restore attribute {name!r} of "
                             f"{cls.__name__} ({exc})") from None
    return estimator
