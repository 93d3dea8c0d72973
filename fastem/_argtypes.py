"""Argument types shared by the ``fastem`` tool (fastem.cli) and fastem.bench.

A leaf module (argparse only), so that both import it and neither imports
the other.
"""

import argparse


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v
