"""Running independent chunks of work on every core, in order, with memory bounded by the chunk.

The heavy steps (encoding event chunks, the feature kernel of a chunk of whole accounts,
scoring a chunk) are numpy, pyarrow and LightGBM calls that release the GIL, so threads run
them side by side without copying the snapshot into other processes. `ordered_map` hands the
chunks to a pool of threads and gives the results back in the order of the chunks, so that a
parallel run concatenates exactly what the serial run does: the outputs are identical, byte
for byte. At most `workers` chunks are being worked on and at most `workers` finished results
wait to be taken, so memory is bounded by the chunk, not by the input.

The setting is `features.workers` (`LEADSCORE__FEATURES__WORKERS`): 0 uses every core this
process may run on, 1 runs serially in the calling thread, N caps the threads at N.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def worker_count(setting: int | None, chunks: int | None = None) -> int:
    """The threads to use: `setting` (0 or None: one per usable core), never more than `chunks`."""
    workers = usable_cores() if not setting else int(setting)
    if workers < 1:
        raise ValueError(f"features.workers must be 0 (every core) or more, got {setting!r}")
    return max(1, min(workers, chunks)) if chunks is not None else workers


def ordered_map(
    work: Callable[[Item], Result], items: Iterable[Item], workers: int
) -> Iterator[Result]:
    """`work(item)` for each item, yielded in the items' order, run on up to `workers` threads.

    With `workers` <= 1 (or a sized `items` of one) it is the plain `map`, in the calling
    thread. Items are drawn from
    `items` lazily in the calling thread (so a reader feeding them overlaps with the work),
    and no more than `workers` results are computed ahead of the one being waited for. An
    exception in `work` (or in drawing an item) is raised here in the items' order, as the
    serial map would raise it, and the work not yet started is cancelled.
    """
    if isinstance(items, Sized):  # no more threads than items: one item runs here
        workers = min(workers, len(items))
    if workers <= 1:
        yield from map(work, items)
        return
    pending: deque[Future[Result]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="leadscore-chunk") as pool:
        try:
            while True:
                try:
                    item = next(source)
                except StopIteration:
                    break
                except Exception:
                    # an earlier item's failure comes first, as it would serially
                    while pending:
                        pending.popleft().result()
                    raise
                pending.append(pool.submit(work, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class ReadAhead(Generic[Item]):
    """The items of an iterable, drawn by a thread of its own from the moment it is made, at
    most `depth` ahead of the one taken (see `read_ahead`)."""

    def __init__(self, items: Iterable[Item], depth: int) -> None:
        self._ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        thread = threading.Thread(
            target=_draw,
            args=(iter(items), self._ready, self._stop),
            name="leadscore-read-ahead",
            daemon=True,
        )
        thread.start()

    def __iter__(self) -> ReadAhead[Item]:
        return self

    def __next__(self) -> Item:
        if self._done:
            raise StopIteration
        item, error = self._ready.get()
        if item is _END:
            self.close()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop drawing (the thread ends at its next item)."""
        self._done = True
        self._stop.set()

    def __del__(self) -> None:
        self._stop.set()


_END = object()


def _put(ready: queue.Queue[Any], entry: tuple[Any, BaseException | None], stop: Any) -> bool:
    """Put `entry` once there is room; False when the reader was closed first."""
    while not stop.is_set():
        try:
            ready.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _draw(source: Iterator[Any], ready: queue.Queue[Any], stop: threading.Event) -> None:
    """The read-ahead thread: every item of `source`, then the end (with its error, if any)."""
    try:
        for item in source:
            if not _put(ready, (item, None), stop):
                break
        else:
            _put(ready, (_END, None), stop)
    except BaseException as error:  # raised in the consumer, in the items' order
        _put(ready, (_END, error), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def read_ahead(items: Iterable[Item], depth: int) -> ReadAhead[Item]:
    """`items`, drawn from now on by a thread of its own, at most `depth` ahead of the consumer.

    For work that needs nothing the caller is still computing (a preset's event tables that
    need only the contact ids, while the caller works out each lead's as-of values): it
    starts on the other core instead of after. An error in drawing is raised to the consumer
    after the items before it, as a plain iteration would raise it. Closing it (or dropping
    it) stops the thread at its next item."""
    return ReadAhead(items, depth)
