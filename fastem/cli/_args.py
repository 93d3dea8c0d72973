"""Argument types of the ``fastem`` tool, and its parser class with one-line errors."""

import argparse

from .._argtypes import _positive_int as _positive_int  # shared with fastem.bench

from .._constants import COVARIANCE_TYPES, INIT_PARAMS  # noqa: F401 (used by the parser)


class CLIError(Exception):
    """An error reported to the user as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, like every other error of the tool; the usage is shown
        # by --help only.
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------


def _columns(text):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected a comma-separated list of columns")
    return [int(p) if p.lstrip("-").isdigit() else p for p in parts]


def _k_values(text):
    """Parse -k for select: 'A:B' (inclusive), 'a,b,c' or 'a'."""
    text = text.strip()

    def one(part):
        try:
            v = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected A:B, a comma-separated list or one positive integer, "
                f"got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(
                f"numbers of components must be >= 1, got {v} in {text!r}")
        return v

    if ":" in text:
        a, sep, b = text.partition(":")
        if ":" in b:
            raise argparse.ArgumentTypeError(f"expected A:B, got {text!r}")
        a, b = one(a), one(b)
        if a > b:
            raise argparse.ArgumentTypeError(f"A:B needs A <= B, got {text!r}")
        return range(a, b + 1)
    values = [one(p) for p in text.split(",")]
    return list(dict.fromkeys(values))


def _dtypes(text):
    parts = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in parts if t not in ("float64", "float32")]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"expected float64 and/or float32, comma-separated, got {text!r}")
    return parts


def _covariance_types(text):
    types = [p.strip() for p in text.split(",") if p.strip()]
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad or not types:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(COVARIANCE_TYPES)}, got {text!r}")
    return list(dict.fromkeys(types))
