"""Reading a model archive: every entry's ``.npy`` header and sizes are checked
before its array is allocated; then the metadata is parsed and decoded.
"""

import importlib
import json
import math
import os
import zipfile
import zlib

import numpy as np

from ._format import (
    _META_KEY,
    CLASSES,
    FORMAT_NAME,
    FORMAT_VERSION,
    _CorruptFile,
    _Decoder,
)

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
