"""The model format: the class registry, which attributes are saved, and the
tagged JSON descriptions of values (:class:`_Encoder`, :class:`_Decoder`).
"""

import dataclasses
import math
import numbers
import struct

import numpy as np

#: Value of the "format" field of the metadata.
FORMAT_NAME = "fastem-model"
#: The format version this module writes; it reads this version and older.
FORMAT_VERSION = 1
#: Estimator classes a file may name, as "module:attribute", imported lazily.
CLASSES = {
    "GaussianMixture": "fastem.mixture:GaussianMixture",
    "MiniBatchGaussianMixture": "fastem.online:MiniBatchGaussianMixture",
    "BayesianGaussianMixture": "fastem.bayesian:BayesianGaussianMixture",
    "MiniBatchBayesianGaussianMixture":
        "fastem.bayesian_online:MiniBatchBayesianGaussianMixture",
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
        from .._suffstats import GaussianParams, SuffStats

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
        if not isinstance(key, str) or key == _META_KEY or key not in self.archive.members:
            raise _CorruptFile(f"the metadata refers to a missing array entry {key!r:.80}")
        return self.archive.read(key)

    def decode(self, desc, where):
        from .._suffstats import GaussianParams, SuffStats

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
            except Exception as exc:  # noqa: BLE001 -- any failure means a bad state
                raise _CorruptFile(f"{where}: invalid RandomState state ({exc})") from None
            return rs
        if kind == "generator":
            name = _typed(desc, "bit_generator", str, where)
            if name not in _BIT_GENERATORS:
                raise _CorruptFile(f"{where}: unknown bit generator {name!r}")
            bg = getattr(np.random, name)()
            try:
                bg.state = self.decode(desc.get("state"), f"{where}.state")
            except _CorruptFile:
                raise
            except Exception as exc:  # noqa: BLE001 -- any failure means a bad state
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
            except Exception as exc:  # noqa: BLE001 -- any failure means bad fields
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
