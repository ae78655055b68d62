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
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

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
