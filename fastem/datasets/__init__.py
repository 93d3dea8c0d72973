"""Data sets shipped with fastem."""

from importlib import resources

import numpy as np

OLD_FAITHFUL_COLUMNS = ("eruptions", "waiting")


def old_faithful_path():
    """Path of the embedded Old Faithful CSV file (272 rows, 2 columns)."""
    return resources.files(__name__).joinpath("old_faithful.csv")


def load_old_faithful(columns=None):
    """The Old Faithful geyser data (Yellowstone): 272 eruptions.

    Parameters
    ----------
    columns : sequence of {'eruptions', 'waiting'}, default=None (both)
        'eruptions' is the eruption time and 'waiting' the waiting time to
        the next eruption, both in minutes.

    Returns
    -------
    X : ndarray of shape (272, len(columns)), float64
    """
    with resources.as_file(old_faithful_path()) as path:
        data = np.loadtxt(path, delimiter=",", skiprows=1)
    if columns is None:
        return data
    if isinstance(columns, str):
        columns = [columns]
    idx = []
    for c in columns:
        if c not in OLD_FAITHFUL_COLUMNS:
            raise ValueError(f"Unknown Old Faithful column {c!r}; choose from "
                             f"{OLD_FAITHFUL_COLUMNS}")
        idx.append(OLD_FAITHFUL_COLUMNS.index(c))
    return np.ascontiguousarray(data[:, idx])
