"""The ``fastem`` entry point: every failure becomes one line on stderr."""

import sys

from ._args import CLIError
from ._commands import _run_bench
from ._parser import build_parser

# Errors whose message is meant for the user as it is; others are named by type.
_EXPECTED_ERRORS = (CLIError, ValueError, TypeError, KeyError, ImportError, OSError)


def _report(exc):
    if isinstance(exc, CLIError):
        msg = str(exc)
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = " ".join(str(exc).split())
        msg = "out of memory" + (f" ({text})" if text else "")
    else:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        text = " ".join(str(text).split())
        if not isinstance(exc, _EXPECTED_ERRORS):
            text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        msg = text or type(exc).__name__
    print(f"fastem: error: {msg}", file=sys.stderr)
    return 2


def _guarded(func, *args):
    """Run a command; every failure becomes one line on stderr and status 2
    (130 for Ctrl-C)."""
    try:
        return func(*args)
    except KeyboardInterrupt:
        print("fastem: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- one line, never a traceback
        return _report(exc)


def main(argv=None):
    """Run the ``fastem`` tool; returns the exit status.

    Parameters
    ----------
    argv : list of str, default=None (``sys.argv[1:]``)
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["bench"]:
        # Everything after 'bench', options included, belongs to fastem.bench.
        return _guarded(_run_bench, argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from .._announce import announcing

    # a command that must compile kernels says so on stderr first
    with announcing(True):
        return _guarded(args.func, args)
