"""The prefetch thread: read the next block while the caller works on this one."""

import queue
import threading

# How long (seconds) the prefetch thread and its consumer wait on the queue
# before they look at the stop flag / the thread's liveness again.
_POLL_S = 0.05



def _prefetched(make_iter, name, depth=1):
    """Run ``make_iter()`` in a daemon thread, ``depth`` items ahead.

    With ``depth=1`` (double buffering) the thread holds at most two items
    the consumer has not taken (one queued, one being made), which is enough
    to overlap reading with the consumer's work and keeps memory at a few
    chunks.

    Exceptions raised in the thread are re-raised in the consumer with their
    original type. When the consumer stops early (``break``, garbage
    collection), the thread notices within ``_POLL_S`` seconds, closes the
    underlying iterator (and so its files) and exits.
    """
    q = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def worker():
        it = None
        try:
            it = make_iter()
            for item in it:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, re-raised there
            put(("error", exc))
        finally:
            if it is not None:
                it.close()

    thread = threading.Thread(target=worker, name=f"fastem-prefetch[{name}]", daemon=True)
    thread.start()
    return _consume(q, stop, thread)


def _consume(q, stop, thread):
    try:
        while True:
            try:
                kind, payload = q.get(timeout=_POLL_S)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("the prefetch thread stopped without a result") from None
                continue
            if kind == "item":
                yield payload
            elif kind == "done":
                return
            else:
                try:
                    raise payload
                finally:
                    payload = None
    finally:
        stop.set()
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
        if thread is not threading.current_thread():
            thread.join(timeout=1.0)

