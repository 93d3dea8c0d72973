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

import dataclasses
import errno
import importlib
import json
import math
import numbers
import os
import re
import secrets
import stat
import struct
import time
import zipfile
import zlib

import numpy as np

__all__ = ["CLASSES", "FORMAT_NAME", "FORMAT_VERSION", "MAX_ELEMENTS", "load", "save",
           "validate_model"]

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
        if not isinstance(key, str) or key == _META_KEY or key not in self.archive.members:
            raise _CorruptFile(f"the metadata refers to a missing array entry {key!r:.80}")
        return self.archive.read(key)

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


#: Most elements one array entry of a model file may declare (and most
#: elements of the covariances of a model): 2**31 float64 values are 16 GiB.
MAX_ELEMENTS = 2**31
#: Most bytes of the JSON metadata.
MAX_METADATA_BYTES = 256 * 2**20
# Deflate cannot expand data by more than about 1032:1; an entry declaring a
# larger ratio lies about its size.
_DEFLATE_MAX_RATIO = 1100
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


class _Archive:
    """The entries of an opened model archive, read with checks.

    Before an entry is read, its ``.npy`` header is parsed and its declared
    shape and dtype are checked: no object (pickled) dtype, at most
    :data:`MAX_ELEMENTS` elements, and no more bytes than the zip entry
    holds (which the size of the file bounds). Only then is the array
    allocated and read. Each entry may be read once: a metadata document
    that names the same entry many times cannot multiply the memory used.
    """

    def __init__(self, zf, path, file_size):
        self.zip = zf
        self.path = path
        self.file_size = file_size
        self.members = {}
        for info in zf.infolist():
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if key in self.members:
                raise ValueError(f"{path} is corrupt: the archive holds the entry "
                                 f"{key!r:.80} twice")
            self.members[key] = info
        self._read = set()

    def _corrupt(self, key, why):
        return ValueError(f"{self.path} is corrupt: entry {key!r:.80} {why}")

    def read(self, key, max_elements=MAX_ELEMENTS):
        if key in self._read:
            raise self._corrupt(key, "is referred to twice by the metadata")
        self._read.add(key)
        info = self.members[key]
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise self._corrupt(key, f"uses compression method {info.compress_type}, "
                                     "which fastem model files never use")
        if info.compress_size > self.file_size or (
                info.compress_type == zipfile.ZIP_STORED
                and info.file_size != info.compress_size) or (
                info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024):
            raise self._corrupt(key, "declares sizes that the file cannot hold")
        try:
            with self.zip.open(info) as f:
                shape, dtype, header_len = _read_npy_header(f)
                if dtype.hasobject:
                    raise ValueError(
                        f"{self.path} holds a pickled object array in entry {key!r}; "
                        "fastem model files never do, and loading it could run code, "
                        "so it is refused")
                n = math.prod(shape)
                if n > max_elements:
                    raise self._corrupt(key, f"declares an array of shape {shape} "
                                             f"({n} elements, more than the limit of "
                                             f"{max_elements})")
                if header_len + n * dtype.itemsize > info.file_size:
                    raise self._corrupt(key, f"declares an array of shape {shape} and "
                                             f"dtype {dtype} but holds only "
                                             f"{info.file_size} bytes")
                f.seek(0)
                arr = np.lib.format.read_array(f, allow_pickle=False)
                if f.read(1):
                    raise self._corrupt(key, "has bytes after its array data")
        except ValueError as exc:
            if str(exc).startswith(self.path):
                raise
            raise self._corrupt(key, f"cannot be read ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError,
                RuntimeError, NotImplementedError, TypeError, OverflowError) as exc:
            raise ValueError(f"{self.path} is truncated or corrupt: cannot read entry "
                             f"{key!r:.80} ({type(exc).__name__}: {exc})") from None
        return arr


def _read_npy_header(f):
    """(shape, dtype, header length) of the .npy data that f starts with."""
    fmt = np.lib.format
    if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise ValueError("it is not a .npy array")
    f.seek(0)
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not used by fastem")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"invalid shape {shape!r:.80}")
    return shape, dtype, f.tell()


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

    _write_atomically(os.fspath(path), lambda f: np.savez(f, **arrays))


#: Temporary files of a save are named ``.<target name>.<pid>.<16 hex
#: digits>.fastem-tmp`` in the target's folder.
TMP_SUFFIX = ".fastem-tmp"
#: A temporary file of an earlier save of the same target is removed when it
#: was not modified for this many seconds...
STALE_AFTER_S = 3600.0
#: ...or when the process named in it is not running on this machine and it
#: was not modified for this many seconds (a writer on another machine
#: sharing the folder keeps modifying its file while it writes).
STALE_DEAD_PID_AFTER_S = 60.0


def _tmp_pattern(name):
    return re.compile(re.escape(f".{name}.") + r"(\d+)\.[0-9a-f]{16}"
                      + re.escape(TMP_SUFFIX))


def _pid_running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # exists (another user's) or cannot tell: keep the file
    return True


def _remove_stale_tmp_files(folder, name, now=None):
    """Remove temporary files left by earlier, crashed saves of ``name``.

    Only files matching this target's own temporary-name pattern are
    considered; see :data:`STALE_AFTER_S` and :data:`STALE_DEAD_PID_AFTER_S`.
    Returns the names removed. Never raises.
    """
    pattern = _tmp_pattern(name)
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                continue
            age = now - st.st_mtime
            if age > STALE_AFTER_S or (age > STALE_DEAD_PID_AFTER_S
                                       and not _pid_running(int(m.group(1)))):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _write_atomically(path, write):
    """Write a file through ``write(fileobj)`` to a temporary file, then
    rename it over ``path``.

    - A symbolic link is followed: its target is replaced, the link kept.
    - A new file gets the mode a plain ``open`` would give it (0666 less the
      umask); a replaced file keeps its mode.
    - The data is flushed to disk before the rename; on any exception
      (KeyboardInterrupt included) the temporary file is removed and the
      target is left as it was.
    - Errors name ``path``, not the temporary file.
    """
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "No such folder to save the model in", path)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    _remove_stale_tmp_files(folder, name)
    try:
        old_mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        old_mode = None
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    # A new file: the kernel applies the umask to 0666, as for open(path, "w").
    # A replaced file: private while written, then the old file's mode.
    create_mode = 0o666 if old_mode is None else 0o600
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(8)}"
                                   f"{TMP_SUFFIX}")
        try:
            fd = os.open(tmp, flags, create_mode)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, path) from None
    else:  # pragma: no cover - 100 collisions of 64 random bits
        raise FileExistsError(errno.EEXIST, "No free temporary name", path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if old_mode is not None:
                os.fchmod(f.fileno(), old_mode)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, path) from None
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """Make the rename durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_meta(archive, path):
    if _META_KEY not in archive.members:
        raise ValueError(
            f"{path} is not a fastem model file: it is an .npz archive without a "
            f"{_META_KEY!r} entry (save models with fastem.persist.save)")
    raw = archive.read(_META_KEY, max_elements=MAX_METADATA_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path} is not a fastem model file: its {_META_KEY!r} entry "
                         f"is a {raw.dtype} array of shape {raw.shape}, not bytes")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is corrupt: its metadata is not valid JSON "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None
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


# ---------------------------------------------------------------------------
# Validation of a decoded model
# ---------------------------------------------------------------------------

_PARAM_ATTRIBUTES = ("weights_", "means_", "covariances_", "precisions_",
                     "precisions_cholesky_")
_ONLINE_STATE = ("_iterate", "_stats", "_avg", "_n_avg", "n_steps_", "n_rows_seen_",
                 "_rng")
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _cov_shape(covariance_type, K, d):
    return {"full": (K, d, d), "tied": (d, d), "diag": (K, d),
            "spherical": (K,)}[covariance_type]


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


class _Checker:
    """Raises ValueError naming the file and the field."""

    def __init__(self, path):
        self.path = path

    def fail(self, field, message):
        raise ValueError(f"{self.path}: field {field!r} {message}")

    def array(self, field, value, shape, why=""):
        if not isinstance(value, np.ndarray):
            self.fail(field, f"is a {type(value).__name__}, not an array")
        if value.dtype.kind != "f":
            self.fail(field, f"has dtype {value.dtype}; a floating-point array is needed")
        if value.shape != shape:
            self.fail(field, f"has shape {value.shape} but {why}, so it should be {shape}")
        if not np.all(np.isfinite(value)):
            self.fail(field, "holds NaN or infinite values")
        return value

    def int(self, field, value, low=0):
        if not _is_int(value) or value < low:
            self.fail(field, f"is {value!r:.80}; an integer >= {low} is needed")
        return int(value)

    def params(self, prefix, ct, K, d, weights, means, covariances, pc, precisions=None):
        """Check one set of mixture parameters against K, d and the type."""
        def name(base):  # 'means_' for the model, '_iterate.means' for a state
            return prefix + base if prefix else base + "_"

        why = f"n_components is {K} and n_features_in_ is {d}"
        shape = _cov_shape(ct, K, d)
        why_cov = f"{why} and covariance_type is {ct!r}"
        self.array(name("means"), means, (K, d), why)
        wname = name("weights")
        w = self.array(wname, weights, (K,), why)
        if np.any(w < 0):
            self.fail(wname, f"holds a negative weight ({float(w.min())!r})")
        total = float(np.sum(w, dtype=np.float64))
        # rounding of K weights stored in their dtype, with a generous floor
        tol = max(1e-6, 4 * K * float(np.finfo(w.dtype).eps))
        if not abs(total - 1.0) <= tol:
            self.fail(wname, f"sums to {total!r}, not 1")
        cname = name("covariances")
        cov = self.array(cname, covariances, shape, why_cov)
        pname = name("precisions_cholesky")
        p = self.array(pname, pc, shape, why_cov)
        if precisions is not None:
            self.array("precisions_", precisions, shape, why_cov)
        if ct in ("full", "tied"):
            mats = cov if ct == "full" else cov[None]
            pmats = p if ct == "full" else p[None]
            diag = np.diagonal(mats, axis1=1, axis2=2)
            if not np.all(diag > 0):
                self.fail(cname, "has a non-positive variance on its diagonal")
            if not np.allclose(mats, np.swapaxes(mats, 1, 2), rtol=1e-5,
                               atol=1e-8 * float(np.max(np.abs(diag)))):
                self.fail(cname, "is not symmetric")
            try:
                chol = np.linalg.cholesky(mats.astype(np.float64))
            except np.linalg.LinAlgError:
                chol = None
            if chol is None or not np.all(np.isfinite(chol)):
                self.fail(cname, "is not positive definite")
            if not np.all(np.diagonal(pmats, axis1=1, axis2=2) > 0):
                self.fail(pname, "has a non-positive value on its diagonal")
            if np.any(np.tril(pmats, -1) != 0):
                self.fail(pname, "is not upper triangular")
        else:
            if not np.all(cov > 0):
                self.fail(cname, "holds a non-positive variance")
            if not np.all(p > 0):
                self.fail(pname, "holds a non-positive value")


def validate_model(estimator, attributes, path="model", online=None):
    """Check decoded attributes of a model before they are assigned.

    Parameters
    ----------
    estimator : GaussianMixture or MiniBatchGaussianMixture
        The estimator built from the file's parameters (without attributes).
    attributes : dict
        The decoded attributes, by name.
    path : str
        Named in the error messages.
    online : bool, default=None
        Whether to check the online state of a MiniBatchGaussianMixture
        (default: when the estimator has ``partial_fit``).

    Raises
    ------
    ValueError
        Naming the path and the field, when the model is not fitted and yet
        holds fitted attributes, or a fitted model's parameters are invalid:
        shapes inconsistent with ``n_components``, ``n_features_in_`` and
        ``covariance_type``; non-finite values; negative weights or weights
        that do not sum to 1; covariances with a non-positive diagonal or
        (full, tied) not symmetric positive definite; precision Cholesky
        factors with a non-positive diagonal or (full, tied) not upper
        triangular; covariances of more than :data:`MAX_ELEMENTS` elements;
        online statistics inconsistent with the model.
    """
    if online is None:
        online = hasattr(estimator, "partial_fit")
    # extreme values (weights of 1e308) must give a clear refusal, not an
    # overflow warning
    with np.errstate(all="ignore"):
        _validate_model(_Checker(path), estimator, attributes, path, online)


def _validate_model(chk, estimator, attributes, path, online):
    fitted_names = _PARAM_ATTRIBUTES + ("n_features_in_",)
    present = [n for n in fitted_names if n in attributes]
    if online and any(n in attributes for n in _ONLINE_STATE):
        present = present or ["_iterate"]
    if not present:
        return
    missing = [n for n in fitted_names if n not in attributes]
    if missing:
        raise ValueError(f"{path}: the model has {present[0]!r} but not "
                         f"{', '.join(map(repr, missing))}; it is incomplete")
    try:
        estimator._check_base_parameters()
        if online and hasattr(estimator, "_check_online_parameters"):
            estimator._check_online_parameters()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    ct = estimator.covariance_type
    K = chk.int("n_components", estimator.n_components, 1)
    d = chk.int("n_features_in_", attributes["n_features_in_"], 1)
    n = math.prod(_cov_shape(ct, K, d)) + K * d
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"{path}: a model with n_components={K}, n_features_in_={d} and "
            f"covariance_type={ct!r} has {n} parameters, more than the limit of "
            f"{MAX_ELEMENTS}")
    a = attributes
    chk.params("", ct, K, d, a["weights_"], a["means_"], a["covariances_"],
               a["precisions_cholesky_"], a["precisions_"])
    names = a.get("feature_names_in_")
    if names is not None:
        if (not isinstance(names, np.ndarray) or names.shape != (d,)
                or not all(isinstance(v, str) for v in names.tolist())):
            chk.fail("feature_names_in_", f"should be an array of {d} strings")
    if "converged_" in a and not isinstance(a["converged_"], (bool, np.bool_)):
        chk.fail("converged_", "is not a bool")
    if "n_iter_" in a:
        chk.int("n_iter_", a["n_iter_"])
    if "lower_bound_" in a and not _is_real(a["lower_bound_"]):
        chk.fail("lower_bound_", "is not a number")
    if "lower_bounds_" in a:
        lbs = a["lower_bounds_"]
        if not isinstance(lbs, (list, tuple, np.ndarray)) or not all(
                _is_real(v) for v in (lbs.tolist() if isinstance(lbs, np.ndarray) else lbs)):
            chk.fail("lower_bounds_", "is not a list of numbers")
    if online:
        _validate_online(chk, a, ct, K, d)


def _validate_online(chk, a, ct, K, d):
    from ._suffstats import GaussianParams, SuffStats

    if "_iterate" not in a:
        extra = [n for n in _ONLINE_STATE if n in a]
        if extra:
            chk.fail(extra[0], "is saved without the online state '_iterate'")
        return
    missing = [n for n in _ONLINE_STATE if n not in a]
    if missing:
        chk.fail(missing[0], "is missing from the online state")
    for name in ("_n_avg", "n_steps_", "n_rows_seen_"):
        chk.int(name, a[name])
    if not isinstance(a["_rng"], (np.random.RandomState, np.random.Generator)):
        chk.fail("_rng", "is not a random state")
    for name in ("_iterate", "_avg"):
        p = a[name]
        if p is None and name == "_avg":
            continue
        if type(p) is not GaussianParams:
            chk.fail(name, "is not a GaussianParams")
        if p.covariance_type != ct:
            chk.fail(name, f"has covariance_type {p.covariance_type!r:.40} but the model "
                           f"has {ct!r}")
        chk.params(name + ".", ct, K, d, p.weights, p.means, p.covariances,
                   p.precisions_cholesky)
    st = a["_stats"]
    if st is None:
        return
    if type(st) is not SuffStats:
        chk.fail("_stats", "is not a SuffStats")
    if st.covariance_type != ct:
        chk.fail("_stats", f"has covariance_type {st.covariance_type!r:.40} but the "
                           f"model has {ct!r}")
    why = f"n_components is {K} and n_features_in_ is {d}"
    s2_shape = {"full": (K, d, d), "tied": (d, d)}.get(ct, (K, d))
    nk = chk.array("_stats.nk", st.nk, (K,), why)
    chk.array("_stats.s1", st.s1, (K, d), why)
    chk.array("_stats.s2", st.s2, s2_shape, why + f" and covariance_type is {ct!r}")
    chk.array("_stats.ref", st.ref, (K, d), why)
    chk.array("_stats.ref2", st.ref2, (d,), why)
    if np.any(nk < 0):
        chk.fail("_stats.nk", "holds a negative count")
    if math.isnan(st.loglik):
        chk.fail("_stats.loglik", "is NaN")
    if not (math.isfinite(st.weight_sum) and st.weight_sum >= 0):
        chk.fail("_stats.weight_sum", f"is {st.weight_sum!r}")
    if st.n_rows < 0:
        chk.fail("_stats.n_rows", f"is {st.n_rows!r}")


def load(path):
    """Load an estimator saved with :func:`save`, checking that it is valid.

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


def _read_archive(fh, path):
    head = fh.read(8)
    fh.seek(0)
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"{path} is not a fastem model file: it holds a single "
                         "array, not a model archive")
    if not head.startswith(_ZIP_MAGICS):
        raise ValueError(f"{path} is not a fastem model file (it is not an .npz "
                         "archive)")
    file_size = os.fstat(fh.fileno()).st_size
    try:
        zf = zipfile.ZipFile(fh)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError,
            NotImplementedError, RuntimeError) as exc:
        raise ValueError(f"{path} is not a fastem model file, or is truncated or "
                         f"corrupt ({type(exc).__name__}: {exc})") from None
    with zf:
        archive = _Archive(zf, path, file_size)
        meta = _read_meta(archive, path)
        class_name = meta.get("class")
        cls = _resolve_class(class_name, path)
        dec = _Decoder(archive, path)
        try:
            params = _decode_section(meta, "params", dec)
            attributes = _decode_section(meta, "attributes", dec)
        except _CorruptFile as exc:
            raise ValueError(f"{path} is corrupt: {exc}") from None
        except RecursionError:
            raise ValueError(f"{path} is corrupt: its metadata nests too deeply") from None
    return class_name, cls, params, attributes


def _decode_section(meta, section, dec):
    items = meta.get(section)
    if not isinstance(items, dict):
        raise _CorruptFile(f"the metadata has no {section!r} mapping")
    what = "parameter" if section == "params" else "attribute"
    return {name: dec.decode(desc, f"{what} {name!r:.80}") for name, desc in items.items()}
