"""Run many independent, seeded replications: serially, on a local process
pool, or on a Dask distributed cluster.

Bootstrap and Monte Carlo work is a map over replication indices ``0..n-1``.
Replication ``i`` always receives the random generator built from child ``i``
of ``numpy.random.SeedSequence(seed)``, so the results are identical whatever
the backend and the number of workers. Large shared inputs (data, a compiled
model) travel once per worker as a *context*, not once per task.

>>> def draw(ctx, rng, i):
...     return ctx["scale"] * rng.standard_normal()
>>> a = run_replications(draw, 4, seed=1, context={"scale": 2.0}, backend="serial", progress=False)
>>> b = run_replications(draw, 4, seed=1, context={"scale": 2.0}, workers=2, progress=False)  # doctest: +SKIP
>>> a == b                                                                                     # doctest: +SKIP
True
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import numpy as np

__all__ = ["run_replications", "replication_seeds", "default_workers", "check_scheduler",
           "ExecutionError", "ExecutionOptionError"]

# One replication: func(context, rng, index) -> result (must be picklable and
# defined at module level so worker processes can import it).
ReplicationFunc = Callable[[Any, np.random.Generator, int], Any]

_CONTEXT: Any = None  # the context inside a pool worker (set by the initializer)


class ExecutionError(RuntimeError):
    """A backend could not be started or reached (bad scheduler address, ...)."""


class ExecutionOptionError(ValueError):
    """An argument of :func:`run_replications` has an invalid value (the caller's mistake, not the cluster's)."""


# the address forms a Dask client connects to; "host:port" alone means tcp
_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def check_scheduler(address: str) -> str:
    """``address`` if it has the form of a Dask scheduler address (``tcp://host:port``, another
    known scheme, or ``host:port``); else :class:`ExecutionOptionError` at once, before any
    connection is tried (a malformed address made the client retry for 40 s)."""
    from urllib.parse import urlsplit

    form = "e.g. tcp://10.0.0.5:8786"
    text = str(address).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme not in _SCHEDULER_SCHEMES:
        raise ExecutionOptionError(f"--scheduler {address!r}: unknown scheme {scheme!r}; a Dask scheduler "
                                   f"address is {'://, '.join(_SCHEDULER_SCHEMES)}:// followed by host:port ({form})")
    if scheme != "inproc":
        try:
            parts = urlsplit(f"{scheme}://{rest}")
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ExecutionOptionError(f"--scheduler {address!r} is not a Dask scheduler address: "
                                       f"it needs a host and a port ({form})")
    return text


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def replication_seeds(seed: int | np.random.SeedSequence | None, n: int) -> list[np.random.SeedSequence]:
    """Child seed sequences ``0..n-1`` of ``seed`` (independent streams)."""
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(n)


def _run_chunk(func: ReplicationFunc, context: Any, items: Sequence[tuple[int, np.random.SeedSequence]]):
    out = []
    with one_blas_thread():
        for i, ss in items:
            out.append((i, func(context, np.random.default_rng(ss), i)))
    return out


def one_blas_thread():
    """Small matrices: threaded BLAS only adds contention (10-30x slower on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()


def _pool_init(context: Any) -> None:
    global _CONTEXT
    _CONTEXT = context
    # The parent handles Ctrl-C; workers must not die mid-task with tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Replications are small linear algebra: one BLAS thread per process is fastest.
    one_blas_thread()


def _pool_chunk(func: ReplicationFunc, items):
    return _run_chunk(func, _CONTEXT, items)


def _chunks(items: list, n_chunks: int) -> list[list]:
    size = max(1, math.ceil(len(items) / max(1, n_chunks)))
    return [items[k : k + size] for k in range(0, len(items), size)]


class _Progress:
    """A rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool | None, total: int, description: str):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar = None
        if enabled and total > 0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description or "replications", total=total)

    def advance(self, k: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, k)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run_replications(
    func: ReplicationFunc,
    n: int,
    *,
    seed: int | np.random.SeedSequence | None,
    context: Any = None,
    backend: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    description: str = "",
    chunks_per_worker: int = 4,
) -> list[Any]:
    """Run ``func(context, rng, i)`` for ``i = 0..n-1``; results in index order.

    backend: ``"serial"``, ``"processes"`` (local pool, ``workers`` processes,
    default all cores), ``"dask"`` (the cluster at ``scheduler``, e.g.
    ``"tcp://10.0.0.5:8786"``), or ``"auto"``: dask when a scheduler is given,
    else processes when more than one worker is available, else serial.
    Ctrl-C cancels outstanding work, shuts the pool down and re-raises
    ``KeyboardInterrupt``.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ExecutionOptionError(f"The 'n' parameter of run_replications must be an int >= 0. Got {n!r} instead.")
    if backend not in ("auto", "serial", "processes", "dask"):
        raise ExecutionOptionError(
            "The 'backend' parameter of run_replications must be one of 'auto', 'serial', "
            f"'processes', 'dask'. Got {backend!r} instead."
        )
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ExecutionOptionError(f"The 'workers' parameter of run_replications must be an int >= 1. Got {workers!r} instead.")
    if scheduler:
        check_scheduler(scheduler)
    n = int(n)
    if backend == "auto":
        if scheduler:
            backend = "dask"
        elif (workers or default_workers()) > 1 and n > 1:
            backend = "processes"
        else:
            backend = "serial"
    if backend == "dask" and not scheduler:
        raise ExecutionOptionError("backend='dask' needs a scheduler address, e.g. scheduler='tcp://127.0.0.1:8786'.")

    items = list(enumerate(replication_seeds(seed, n)))
    results: list[Any] = [None] * n
    bar = _Progress(progress, n, description)
    try:
        if backend == "serial" or n == 0:
            with one_blas_thread():
                for i, ss in items:
                    results[i] = func(context, np.random.default_rng(ss), i)
                    bar.advance(1)
        elif backend == "processes":
            _run_pool(func, context, items, results, bar, workers or default_workers(), chunks_per_worker)
        else:
            _run_dask(func, context, items, results, bar, scheduler, chunks_per_worker)
    finally:
        bar.close()
    return results


def _run_pool(func, context, items, results, bar, workers, chunks_per_worker) -> None:
    workers = max(1, min(workers, len(items)))
    # fork starts in milliseconds and shares the parent's imports; elsewhere spawn.
    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform == "linux" else "spawn"
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context(method), initializer=_pool_init, initargs=(context,)
    )
    futures = set()
    try:
        for chunk in _chunks(items, workers * chunks_per_worker):
            futures.add(pool.submit(_pool_chunk, func, chunk))
        while futures:
            done, futures = wait(futures, return_when=FIRST_COMPLETED)
            for fut in done:
                part = _result(fut, "a worker process")
                for i, value in part:
                    results[i] = value
                bar.advance(len(part))
    except BaseException:
        for fut in futures:
            fut.cancel()
        # Kill running workers instead of waiting for their current chunk.
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _result(future, where: str):
    """A chunk's results; a replication that raised becomes a sentence naming where it ran.

    Without this a worker's bare ``KeyError('t_cult')`` reached the user as "t_cult".
    """
    try:
        return future.result()
    except (ExecutionError, KeyboardInterrupt):
        raise
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ExecutionError(f"A replication failed on {where} ({detail}). Running the same command "
                             "without --scheduler/--workers shows whether the model or the cluster is at fault; "
                             "please report it if the model fits on its own.") from exc


def _check_reachable(scheduler: str) -> None:
    """Fail in seconds, not after the client's long retry loop, when nothing listens."""
    import socket
    from urllib.parse import urlsplit

    if "://" not in scheduler:
        scheduler = "tcp://" + scheduler
    if not scheduler.startswith("tcp://"):
        return
    parts = urlsplit(scheduler)
    try:
        with socket.create_connection((parts.hostname, parts.port or 8786), timeout=3):
            pass
    except (OSError, ValueError) as exc:
        raise ExecutionError(f"Cannot reach the Dask scheduler at {scheduler!r}: {exc}") from exc


def _run_dask(func, context, items, results, bar, scheduler, chunks_per_worker) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ExecutionError("Dask execution needs the 'distributed' package.") from exc
    _check_reachable(scheduler)
    try:
        client = Client(scheduler, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutionError(f"Cannot reach the Dask scheduler at {scheduler!r}: {exc}") from exc
    futures = []
    try:
        n_workers = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        ctx = client.scatter(context, broadcast=True) if context is not None else None
        chunks = _chunks(items, n_workers * chunks_per_worker)
        futures = [client.submit(_run_chunk, func, ctx, chunk, pure=False) for chunk in chunks]
        for fut in as_completed(futures, loop=client.loop):
            part = _result(fut, f"a Dask worker of {scheduler}")
            for i, value in part:
                results[i] = value
            bar.advance(len(part))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.close()
