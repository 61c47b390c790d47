"""Where and how the model runs: on the event loop or a dedicated thread, alone or in adaptive micro-batches.

Where: a call the model's own measurement (`LoadedModel.calibrate`) says is quick runs on the event loop,
since handing a sub-millisecond call to a thread costs more than the call and lengthens the latency tail; a
slower one runs on this process's single model thread, so the loop keeps answering /health and reading other
requests meanwhile. The threshold is PREDICT_INLINE_MAX_MS.

Batching (BATCH_MAX_SIZE instances, BATCH_MAX_WAIT_MS): concurrent requests are scored in one model call and
answered individually.
- A request that is alone goes at once, on the spot: when the HTTP layer (worker.py) says no other request of
  this process is in flight, not even one whose bytes arrived with it, nobody can join, so it is scored like an
  unbatched request, without a batch, a future or another event-loop iteration. (Under another server, which
  cannot say so, its batch goes one loop iteration later, after the requests that arrived with it joined.)
- Otherwise its batch goes when it holds BATCH_MAX_SIZE instances; or when every request in flight has joined
  it, and they are at least as many as went together lately (the largest batch this second or the one before); or
  BATCH_MAX_WAIT_MS after it opened, whichever comes first. The second rule is what makes batching adaptive:
  under sustained load the clients answered by one batch send their next requests while it is being answered,
  so a batch smaller than lately waits (at most BATCH_MAX_WAIT_MS) for those, rather than splitting the clients
  into cohorts that each pay for a model call; when the load falls, so does the number it waits for. (Only
  requests that submitted rows count: one refused or abandoned before that counts for nothing. Nor is a request
  whose body is still arriving waited for, nor counted as in flight: a client trickling its body could otherwise
  hold every batch for the maximum wait.)
- What a full batch leaves over goes next, at once: those requests came together with it.
- While the model is busy on its thread, arriving requests queue and go together as the next batch.
Errors stay with their request: a batch whose call raises is scored again one request at a time, and a row the
model cannot score fails only the request that sent it (main.py refuses to send non-finite probabilities).
BATCH_MAX_SIZE 1 turns batching off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_server.model import LoadedModel

DEFAULT_INLINE_MAX_MS = 2.0
DEFAULT_BATCH_MAX_SIZE = 64
DEFAULT_BATCH_MAX_WAIT_MS = 2.0
PEAK_WINDOW_SECONDS = 1.0

log = logging.getLogger("model_server")


@dataclass(frozen=True)
class BatchSettings:
    max_size: int = DEFAULT_BATCH_MAX_SIZE
    max_wait_ms: float = DEFAULT_BATCH_MAX_WAIT_MS
    inline_max_ms: float = DEFAULT_INLINE_MAX_MS

    @classmethod
    def from_environment(cls, env: dict[str, str] | Any) -> BatchSettings:
        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = float("nan")
            if not value >= minimum or value == float("inf"):
                raise ValueError(f"{name}={raw!r} must be a number of at least {minimum:g}")
            return value

        max_size = number("BATCH_MAX_SIZE", DEFAULT_BATCH_MAX_SIZE, 1)
        if max_size != int(max_size):
            raise ValueError(f"BATCH_MAX_SIZE={env.get('BATCH_MAX_SIZE')!r} must be a whole number of at least 1")
        return cls(int(max_size), number("BATCH_MAX_WAIT_MS", DEFAULT_BATCH_MAX_WAIT_MS, 0),
                   number("PREDICT_INLINE_MAX_MS", DEFAULT_INLINE_MAX_MS, 0))

    @property
    def enabled(self) -> bool:
        return self.max_size > 1


@dataclass
class _Pending:
    rows: Any  # (n, features) float64 array
    future: asyncio.Future[Any]


@dataclass
class Runner:
    """Scores rows with the model: on the loop or on a dedicated thread, by the model's measured cost."""

    model: LoadedModel
    inline_max_ms: float
    observe_batch: Callable[[int], None] = lambda rows: None
    _thread: concurrent.futures.ThreadPoolExecutor | None = field(default=None, init=False)

    def inline(self, rows: int) -> bool:
        return self.model.estimated_ms(rows) <= self.inline_max_ms

    def thread(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        return self._thread

    def call(self, rows: Any) -> Any:
        """The model on rows the server has checked. Within the limits derived from the model no step can overflow,
        so scikit-learn's own finiteness checks are skipped (`assume_finite`, for this call only): about a
        twentieth of a one-row call. A model without derived limits keeps them: they refuse what overflows
        inside it (a float32 cast, a scaler), which the server then answers 422."""
        if self.model.feature_limits is None:
            return self.model.probabilities(rows)
        import sklearn  # noqa: PLC0415 - loaded with the model; keeps `import model_server` light

        with sklearn.config_context(assume_finite=True):
            return self.model.probabilities(rows)

    async def probabilities(self, rows: Any) -> Any:
        """One request's rows, scored alone (batching off)."""
        self.observe_batch(len(rows))
        if self.inline(len(rows)):
            return self.call(rows)
        return await asyncio.get_running_loop().run_in_executor(self.thread(), self.call, rows)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)


Outcome = tuple[Any, BaseException | None]  # (probabilities, None) or (None, the request's error)


def score_isolated(model_call: Callable[[Any], Any], batch: list[Any]) -> tuple[list[Outcome], list[int]]:
    """Score a batch (each item a request's rows) in one call; each request's outcome, and the sizes of the calls
    made. A call that raises is retried one request at a time to find the request that broke it. (A row whose
    probabilities are not finite fails only its own request too: main.py refuses to send it.) Touches no asyncio
    object, so it may run on the model thread."""
    import numpy as np  # noqa: PLC0415

    calls = [sum(len(rows) for rows in batch)]
    try:
        probabilities = model_call(batch[0] if len(batch) == 1 else np.concatenate(batch))
    except Exception as error:
        if len(batch) == 1:
            return [(None, error)], calls
        outcomes: list[Outcome] = []
        for rows in batch:
            (outcome,), sizes = score_isolated(model_call, [rows])
            outcomes.append(outcome)
            calls += sizes
        return outcomes, calls
    outcomes, start = [], 0
    for rows in batch:
        outcomes.append((probabilities[start:start + len(rows)], None))
        start += len(rows)
    return outcomes, calls


class Batcher:
    """Gathers concurrent requests of one process into model calls (see the module docstring)."""

    def __init__(self, runner: Runner, settings: BatchSettings):
        self.runner, self.settings = runner, settings
        self.pending: list[_Pending] = []
        self.pending_rows = 0
        self.expected = 0  # /predict requests in this process that have not submitted their rows yet
        self.busy = False  # a batch is being scored on the model thread
        self._flush_soon = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # The most requests one batch took, in this window and the one before (see `_peak`): only requests that
        # submitted rows count, never one refused or abandoned before that.
        self._peak_now = self._peak_before = 0
        self._window_ends = time.monotonic() + PEAK_WINDOW_SECONDS
        self._leftover = False  # what is pending was left over from a full batch: it goes next, at once

    def arrive(self) -> None:
        """A /predict request started: it may submit rows soon, so a batch may wait for it."""
        self.expected += 1

    def _peak(self) -> int:
        """The most requests that went together lately (this window or the one before)."""
        now = time.monotonic()
        if now >= self._window_ends:
            self._peak_before = self._peak_now if now < self._window_ends + PEAK_WINDOW_SECONDS else 0
            self._peak_now = 0
            self._window_ends = now + PEAK_WINDOW_SECONDS
        return max(self._peak_now, self._peak_before)

    def leave(self) -> None:
        """A request that arrived will not submit (it failed validation, or its client left)."""
        self.expected -= 1
        self._schedule()

    async def score(self, rows: Any, requests_in_flight: int | None = None, arrived: bool = True) -> Any:
        """The class probabilities of `rows` (this request's), scored alone or with others.

        `requests_in_flight`, when the HTTP server can tell, counts the requests of this process that could submit
        rows soon, this one included: those whose bytes arrived with this one's but whose handling has not started
        count, those still receiving a body do not. If there is no other, nobody can join. `arrived`: this
        request was counted by `arrive()` (a request whose body came later was not: nobody waited for it)."""
        others_expected = self.expected - arrived
        if (requests_in_flight is not None and requests_in_flight <= 1 and others_expected <= 0
                and not self.pending and not self.busy and self.runner.inline(len(rows))):
            self.expected = others_expected
            return await self.runner.probabilities(rows)  # inline: finishes without yielding to the loop
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(rows, future))
        self.pending_rows += len(rows)
        self.expected = others_expected
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if not self.pending or self.busy or self._flush_soon:
            return
        full = self.pending_rows >= self.settings.max_size
        # Every request in flight has joined, and as many as the largest batch lately: waiting gains
        # nothing. With fewer than lately, the others are probably on their way (clients answered by the last
        # batch sending their next request), so the batch waits for them, up to the maximum wait.
        everyone = self.expected <= 0 and len(self.pending) >= self._peak()
        if full or everyone or self._leftover or self.settings.max_wait_ms <= 0:
            # Not a wait: the flush runs right after the tasks that are ready now (requests whose bytes arrived
            # together), so those join this batch instead of each going alone.
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.settings.max_wait_ms / 1000, self._flush)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.pending or self.busy:
            return
        batch: list[_Pending] = []
        size = 0
        while self.pending and (not batch or size + len(self.pending[0].rows) <= self.settings.max_size):
            item = self.pending.pop(0)
            if not item.future.done():  # a request whose client left drops out
                batch.append(item)
                size += len(item.rows)
        self.pending_rows = sum(len(item.rows) for item in self.pending)
        self._leftover = bool(self.pending)  # those who came with this batch but did not fit: nobody to wait for
        self._peak()  # starts a new window first if this one has ended
        self._peak_now = max(self._peak_now, len(batch))
        if not batch:
            return
        if self.runner.inline(size):
            self._resolve(batch, *score_isolated(self.runner.call, [item.rows for item in batch]))
            self._schedule()
            return
        self.busy = True
        task = asyncio.get_running_loop().create_task(self._on_thread(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_thread(self, batch: list[_Pending]) -> None:
        try:
            outcomes, calls = await asyncio.get_running_loop().run_in_executor(
                self.runner.thread(), score_isolated, self.runner.call, [item.rows for item in batch])
            self._resolve(batch, outcomes, calls)
        except BaseException as error:  # the thread pool is shutting down: fail the batch, not the server
            self._resolve(batch, [(None, error)] * len(batch), [])
            raise
        finally:
            self.busy = False
            self._schedule()

    def _resolve(self, batch: list[_Pending], outcomes: list[Outcome], calls: list[int]) -> None:
        for item, (result, error) in zip(batch, outcomes, strict=True):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)
        try:  # after the answers: a metrics failure must not strand a batch
            for size in calls:
                self.runner.observe_batch(size)
        except Exception:
            log.exception("recording the batch size failed")
