"""Optional tqdm progress bars for long fits (``progress=True``)."""


class _NoBar:
    """Stands in for a bar when progress is off: every call does nothing."""

    def update(self, n=1):
        pass

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def progress_bar(enabled, total=None, desc="", unit="it"):
    """A tqdm bar on stderr when ``enabled``, else an object that does nothing.

    Raises ImportError naming the extra to install when tqdm is missing.
    """
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install 'fastem[progress]'") from None
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
