"""The feature classes of the full covariance type and their tags.

A fit with full covariances runs one of three code paths, chosen by the
number of features d.  The class reaches a kernel as the dtype of an empty
"tag" array, so that it is part of the kernel's type: each class compiles
(and caches) a kernel of its own holding only its own code path, from one
kernel source.
"""

import numpy as np
from numba import types

# from this many features on, full second moments are formed from rows scaled
# by the square roots of their responsibilities (one array for both factors)
SCALED_MIN_D = 6
# from this many features on, AVX-512 code takes the triangular products of
# the log densities four columns at a time (see _blocks: L, d=64, ran its
# E-step 1.08x as fast; M, d=16, 0.97x), in kernels of their own, so that
# fits of fewer features do not compile that code
WIDE_MIN_D = 32
# code paths of the full type by number of features; each gets kernels of its
# own (compiled only when data of that kind arrive), see _d_class
DCLASS_SMALL = 0     # d <= 2: one sweep per component, all in registers
DCLASS_WEIGHTED = 1  # 2 < d < SCALED_MIN_D: tiles on responsibility-weighted rows
DCLASS_SCALED = 2    # SCALED_MIN_D <= d < WIDE_MIN_D: tiles on square-root-scaled rows
DCLASS_WIDE = 3      # d >= WIDE_MIN_D: as SCALED, wider tiles of the log densities
# The class reaches the kernels as the dtype of an empty "tag" array, so that
# it is part of the kernel's type: each class compiles (and caches) a kernel
# of its own holding only its own code path, from one kernel source.
_TAG_DTYPES = (np.int8, np.int16, np.int32, np.int64)
_TAGS = tuple(np.empty(0, dtype=t) for t in _TAG_DTYPES)

_f8 = types.float64
_i8 = types.int64


def d_class(d):
    """The code path of the full type for d features (DCLASS_*)."""
    if d <= 2:
        return DCLASS_SMALL
    if d < SCALED_MIN_D:
        return DCLASS_WEIGHTED
    return DCLASS_SCALED if d < WIDE_MIN_D else DCLASS_WIDE


def class_tag(d):
    """The tag array (empty; its dtype names the class) for d features."""
    return _TAGS[d_class(d)]


def class_name(tag):
    """The range of d of a tag array's class, e.g. 'd<=2'."""
    return ("d<=2", f"2<d<{SCALED_MIN_D}", f"{SCALED_MIN_D}<=d<{WIDE_MIN_D}",
            f"d>={WIDE_MIN_D}")[
        _TAG_DTYPES.index(tag.dtype.type)]


def _tag_class(tag):
    """DCLASS_* of a tag's Numba array type (at compile time)."""
    return [types.int8, types.int16, types.int32, types.int64].index(tag.dtype)
