"""Save fitted fastem estimators to one ``.npz`` file and load them back.

The file is a plain NumPy ``.npz`` archive (a zip of ``.npy`` files), written
with :func:`numpy.savez` and read with ``numpy.load(..., allow_pickle=False)``.
It never contains pickled objects, so loading a file never runs code from it:

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

Examples
--------
>>> from fastem import GaussianMixture
>>> from fastem.datasets import load_old_faithful
>>> from fastem.persist import load, save
>>> gm = GaussianMixture(2, random_state=0).fit(load_old_faithful())
>>> save(gm, "faithful.npz")                              # doctest: +SKIP
>>> gm2 = load("faithful.npz")                            # doctest: +SKIP
"""

import dataclasses
import errno
import importlib
import json
import math
import numbers
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = ["CLASSES", "FORMAT_NAME", "FORMAT_VERSION", "load", "save"]

#: Value of the "format" field of the metadata.
FORMAT_NAME = "fastem-model"
#: The format version this module writes; it reads this version and older.
FORMAT_VERSION = 1
#: Estimator classes a file may name, as "module:attribute", imported lazily.
CLASSES = {
    "GaussianMixture": "fastem.mixture:GaussianMixture",
    "MiniBatchGaussianMixture": "fastem.online:MiniBatchGaussianMixture",
}

_META_KEY = "__meta__"

# Attributes saved for an estimator that does not (yet) define
# ``_persist_attributes()``: the fitted attributes of both estimators and the
# online state of MiniBatchGaussianMixture.
_DEFAULT_ATTRIBUTES = (
    "weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
    "converged_", "n_iter_", "lower_bound_", "lower_bounds_", "n_features_in_",
    "feature_names_in_", "_stats", "_n_steps", "_rng",
)

_SUFFSTATS_FIELDS = ("covariance_type", "nk", "s1", "s2", "ref", "ref2", "loglik",
                     "weight_sum", "n_rows")
_PARAMS_FIELDS = ("covariance_type", "weights", "means", "covariances",
                  "precisions_cholesky")
# Bit generators a saved np.random.Generator may name.
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


# ---------------------------------------------------------------------------
# Encoding: Python values -> JSON-able descriptions + arrays
# ---------------------------------------------------------------------------


class _Encoder:
    """Turns values into JSON-able descriptions, collecting arrays on the side."""

    def __init__(self):
        self.arrays = {}

    def array(self, arr):
        arr = np.asarray(arr)
        if arr.dtype.hasobject:
            raise TypeError(
                f"cannot save an array of dtype {arr.dtype} without pickling; "
                "convert it to a numeric or string dtype")
        key = f"arr_{len(self.arrays)}"
        self.arrays[key] = arr
        return key

    def encode(self, value, where):
        from ._suffstats import GaussianParams, SuffStats

        if value is None:
            return {"type": "none"}
        if isinstance(value, bool):
            return {"type": "bool", "value": value}
        if isinstance(value, np.generic):
            # numpy scalars (np.float32, np.int64, np.bool_, np.str_, ...)
            # keep their dtype as 0-d arrays.
            return {"type": "scalar", "key": self.array(np.asarray(value))}
        if isinstance(value, numbers.Integral) and type(value) is int:
            return {"type": "int", "value": int(value)}
        if type(value) is float:
            return _encode_float(value)
        if type(value) is str:
            return {"type": "str", "value": value}
        if isinstance(value, np.ndarray):
            if value.dtype == object and all(type(v) is str for v in value.flat):
                # scikit-learn keeps feature_names_in_ as an object array of str.
                return {"type": "str_object_array", "shape": list(value.shape),
                        "items": list(value.flat)}
            return {"type": "array", "key": self.array(value)}
        if type(value) in (list, tuple):
            return {"type": type(value).__name__,
                    "items": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if type(value) is dict:
            for k in value:
                if type(k) is not str:
                    raise TypeError(f"cannot save {where}: dict keys must be str, got {k!r}")
            return {"type": "dict",
                    "items": {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
        if type(value) is np.random.RandomState:
            name, keys, pos, has_gauss, cached = value.get_state(legacy=True)
            return {"type": "random_state", "bit_generator": str(name),
                    "keys": self.array(keys), "pos": int(pos), "has_gauss": int(has_gauss),
                    "cached_gaussian": _encode_float(float(cached))}
        if type(value) is np.random.Generator:
            bg = value.bit_generator
            name = type(bg).__name__
            if name not in _BIT_GENERATORS:
                raise TypeError(f"cannot save {where}: unsupported bit generator {name}")
            return {"type": "generator", "bit_generator": name,
                    "state": self.encode(bg.state, f"{where}.state")}
        if type(value) is SuffStats:
            return {"type": "suffstats",
                    "fields": {f: self.encode(getattr(value, f), f"{where}.{f}")
                               for f in _SUFFSTATS_FIELDS}}
        if type(value) is GaussianParams:
            return {"type": "gaussian_params",
                    "fields": {f.name: self.encode(getattr(value, f.name), f"{where}.{f.name}")
                               for f in dataclasses.fields(value)}}
        if isinstance(value, numbers.Integral):  # int subclasses other than bool
            return {"type": "int", "value": int(value)}
        if isinstance(value, numbers.Real) and isinstance(value, float):
            return _encode_float(float(value))
        raise TypeError(
            f"cannot save {where}: values of type {type(value).__name__} are not "
            "supported (supported: None, bool, int, float, str, list, tuple, dict, "
            "numpy scalars and arrays, RandomState, Generator, SuffStats, GaussianParams)")


def _encode_float(x):
    out = {"type": "float", "value": repr(x)}
    if math.isnan(x):
        out["bits"] = struct.pack("<d", x).hex()
    return out


# ---------------------------------------------------------------------------
# Decoding: descriptions + arrays -> Python values (no code from the file runs)
# ---------------------------------------------------------------------------


class _CorruptFile(Exception):
    """Raised while decoding; turned into a ValueError naming the file."""


class _Decoder:
    def __init__(self, archive, path):
        self.archive = archive
        self.path = path

    def array(self, key):
        if not isinstance(key, str) or key == _META_KEY or key not in self.archive.files:
            raise _CorruptFile(f"the metadata refers to a missing array entry {key!r}")
        return _read_entry(self.archive, key, self.path)

    def decode(self, desc, where):
        from ._suffstats import GaussianParams, SuffStats

        if not isinstance(desc, dict) or "type" not in desc:
            raise _CorruptFile(f"{where}: malformed value description {desc!r:.80}")
        kind = desc["type"]
        if kind == "none":
            return None
        if kind == "bool":
            return _typed(desc, "value", bool, where)
        if kind == "int":
            return _typed(desc, "value", int, where)
        if kind == "float":
            return _decode_float(desc, where)
        if kind == "str":
            return _typed(desc, "value", str, where)
        if kind == "array":
            return self.array(desc.get("key"))
        if kind == "str_object_array":
            items = desc.get("items")
            shape = desc.get("shape")
            if (not isinstance(items, list) or not all(type(v) is str for v in items)
                    or not isinstance(shape, list)
                    or not all(type(n) is int and n >= 0 for n in shape)
                    or math.prod(shape) != len(items)):
                raise _CorruptFile(f"{where}: malformed string array")
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(shape)
        if kind == "scalar":
            arr = self.array(desc.get("key"))
            if arr.ndim != 0:
                raise _CorruptFile(f"{where}: a scalar entry has shape {arr.shape}")
            return arr[()]
        if kind in ("list", "tuple"):
            items = desc.get("items")
            if not isinstance(items, list):
                raise _CorruptFile(f"{where}: malformed {kind}")
            values = [self.decode(v, f"{where}[{i}]") for i, v in enumerate(items)]
            return values if kind == "list" else tuple(values)
        if kind == "dict":
            items = desc.get("items")
            if not isinstance(items, dict):
                raise _CorruptFile(f"{where}: malformed dict")
            return {k: self.decode(v, f"{where}[{k!r}]") for k, v in items.items()}
        if kind == "random_state":
            keys = self.array(desc.get("keys"))
            state = (_typed(desc, "bit_generator", str, where), keys,
                     _typed(desc, "pos", int, where), _typed(desc, "has_gauss", int, where),
                     _decode_float(desc.get("cached_gaussian"), where))
            rs = np.random.RandomState()
            try:
                rs.set_state(state)
            except (ValueError, TypeError) as exc:
                raise _CorruptFile(f"{where}: invalid RandomState state ({exc})") from None
            return rs
        if kind == "generator":
            name = _typed(desc, "bit_generator", str, where)
            if name not in _BIT_GENERATORS:
                raise _CorruptFile(f"{where}: unknown bit generator {name!r}")
            bg = getattr(np.random, name)()
            try:
                bg.state = self.decode(desc.get("state"), f"{where}.state")
            except (ValueError, TypeError, KeyError) as exc:
                raise _CorruptFile(f"{where}: invalid {name} state ({exc})") from None
            return np.random.Generator(bg)
        if kind in ("suffstats", "gaussian_params"):
            names = _SUFFSTATS_FIELDS if kind == "suffstats" else _PARAMS_FIELDS
            fields = desc.get("fields")
            if not isinstance(fields, dict) or set(fields) != set(names):
                raise _CorruptFile(f"{where}: {kind} needs the fields {', '.join(names)}")
            values = {f: self.decode(fields[f], f"{where}.{f}") for f in names}
            cls = SuffStats if kind == "suffstats" else GaussianParams
            try:
                return cls(**values)
            except (ValueError, TypeError, IndexError) as exc:
                raise _CorruptFile(f"{where}: cannot rebuild {cls.__name__} ({exc})") from None
        raise _CorruptFile(f"{where}: unknown value type {kind!r}")


def _typed(desc, field, typ, where):
    value = desc.get(field) if isinstance(desc, dict) else None
    if type(value) is not typ:
        raise _CorruptFile(f"{where}: expected a {typ.__name__} in {field!r}, got {value!r:.80}")
    return value


def _decode_float(desc, where):
    if not isinstance(desc, dict) or desc.get("type") != "float":
        raise _CorruptFile(f"{where}: malformed float {desc!r:.80}")
    bits = desc.get("bits")
    if bits is not None:
        try:
            return struct.unpack("<d", bytes.fromhex(bits))[0]
        except (TypeError, ValueError, struct.error):
            raise _CorruptFile(f"{where}: malformed float bits {bits!r:.40}") from None
    text = _typed(desc, "value", str, where)
    try:
        return float(text)
    except ValueError:
        raise _CorruptFile(f"{where}: malformed float {text!r:.40}") from None


def _read_entry(archive, key, path):
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise ValueError(
                f"{path} holds a pickled object array in entry {key!r}; fastem model "
                "files never do, and loading it could run code, so it is refused") from None
        raise ValueError(f"{path} is corrupt: cannot read entry {key!r} ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error) as exc:
        raise ValueError(f"{path} is truncated or corrupt: cannot read entry {key!r} "
                         f"({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def _class_name(estimator):
    cls = type(estimator)
    for name, target in CLASSES.items():
        module, _, attr = target.partition(":")
        if cls.__name__ == name and cls.__module__ == module and cls.__qualname__ == attr:
            return name
    raise TypeError(
        f"save supports {', '.join(CLASSES)}; got an instance of "
        f"{cls.__module__}.{cls.__qualname__}")


def _attribute_names(estimator):
    method = getattr(estimator, "_persist_attributes", None)
    names = list(method()) if callable(method) else list(_DEFAULT_ATTRIBUTES)
    for name in names:
        if not isinstance(name, str) or not _valid_attribute_name(name):
            raise ValueError(f"_persist_attributes() returned an invalid name {name!r}")
    return names


def _valid_attribute_name(name):
    return name.isidentifier() and not name.startswith("__")


def save(estimator, path):
    """Save an estimator (fitted or not) to one ``.npz`` file.

    Parameters
    ----------
    estimator : GaussianMixture or MiniBatchGaussianMixture
        Its constructor parameters (``get_params(deep=False)``) and the
        attributes named by its ``_persist_attributes()`` that it has are
        saved.
    path : str or os.PathLike
        The file to write, exactly as given: unlike :func:`numpy.savez`, no
        ``.npz`` suffix is appended when the name lacks one. The file is
        written to a temporary name in the same folder and then renamed, so
        an existing file is replaced only by a complete one.

    Raises
    ------
    TypeError
        For an estimator of another class, or an attribute or parameter
        value of a type that cannot be saved without pickling.

    Notes
    -----
    Read the file back with :func:`load`. Arrays keep their dtype, shape and
    bytes; floats, ints, strings, random states and sufficient statistics
    are restored exactly.
    """
    from . import __version__

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

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "No such folder to save the model in", path)
    fd, tmp = tempfile.mkstemp(prefix=".fastem-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            # A file object: np.savez writes to it as is (no suffix appended).
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_meta(archive, path):
    if _META_KEY not in archive.files:
        raise ValueError(
            f"{path} is not a fastem model file: it is an .npz archive without a "
            f"{_META_KEY!r} entry (save models with fastem.persist.save)")
    raw = _read_entry(archive, _META_KEY, path)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} is not a fastem model file: its {_META_KEY!r} entry "
                         f"is a {raw.dtype} array of shape {raw.shape}, not bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is corrupt: its metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        seen = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path} is not a fastem model file (format {seen!r}, "
                         f"expected {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise ValueError(f"{path} is corrupt: invalid format version {version!r}")
    if version > FORMAT_VERSION:
        written_by = meta.get("fastem_version", "a newer fastem")
        raise ValueError(
            f"{path} has model format version {version}, written by fastem "
            f"{written_by}; this fastem reads format version {FORMAT_VERSION} and "
            "older. Upgrade fastem to load it.")
    return meta


def _resolve_class(name, path):
    target = CLASSES.get(name) if isinstance(name, str) else None
    if target is None:
        raise ValueError(f"{path} holds a model of unknown class {name!r}; fastem can "
                         f"load {', '.join(CLASSES)}")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{path} holds a {name}, which this installation of fastem "
                         f"cannot load ({module}.{attr} is not available: {exc})") from None


def load(path):
    """Load an estimator saved with :func:`save`.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    estimator : GaussianMixture or MiniBatchGaussianMixture
        A new estimator with the saved parameters and attributes.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file, when it is not a fastem model file, is truncated or
        corrupt, holds pickled data, has a newer format version than this
        fastem reads, or names an unknown class.

    Notes
    -----
    The file is read with ``allow_pickle=False``: loading never executes
    code stored in it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a fastem model file")
    # Open the file here (not in np.load) so that it is closed on every error.
    with open(path, "rb") as fh:
        cls, params, attributes = _read_archive(fh, path)
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{path} sets parameters {unknown} that {cls.__name__} of this fastem does "
            "not have; was it saved by a newer fastem?")
    estimator = cls(**params)
    for name, value in attributes.items():
        if not _valid_attribute_name(name):
            raise ValueError(f"{path} is corrupt: invalid attribute name {name!r}")
        try:
            setattr(estimator, name, value)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: cannot restore attribute {name!r} of "
                             f"{cls.__name__} ({exc})") from None
    return estimator


def _read_archive(fh, path):
    try:
        archive = np.load(fh, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path} is not a fastem model file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path} is not a fastem model file, or is truncated or "
                         f"corrupt ({type(exc).__name__}: {exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not a fastem model file: it holds a single "
                         "array, not a model archive")
    with archive:
        meta = _read_meta(archive, path)
        cls = _resolve_class(meta.get("class"), path)
        dec = _Decoder(archive, path)
        try:
            params = _decode_section(meta, "params", dec)
            attributes = _decode_section(meta, "attributes", dec)
        except _CorruptFile as exc:
            raise ValueError(f"{path} is corrupt: {exc}") from None
    return cls, params, attributes


def _decode_section(meta, section, dec):
    items = meta.get(section)
    if not isinstance(items, dict):
        raise _CorruptFile(f"the metadata has no {section!r} mapping")
    what = "parameter" if section == "params" else "attribute"
    return {name: dec.decode(desc, f"{what} {name!r}") for name, desc in items.items()}
