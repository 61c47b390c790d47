"""The gunicorn worker: uvicorn's, with bounds on what a connection may cost and a drain period on SIGTERM.

Connections (uvicorn bounds neither the request head nor the time it takes to arrive):
- a request head (request line and headers, and a chunked body's trailers) over MAX_HEADER_BYTES (16384) is
  answered 431 and closed; reads that fall wholly inside one head are also counted raw, so even one endless
  header value (which the parser buffers without a callback) is refused within a read of the limit;
- a chunked body's trailers count toward the same limit (431); bytes that bring neither body nor a chunk header
  are also counted raw, so one endless trailer value, which the parser also buffers, is refused too;
- a head not complete HEADER_TIMEOUT_SECONDS (10) after its first byte is answered 408 and closed;
- a connection that sends nothing is closed after KEEPALIVE_SECONDS, as an idle keep-alive connection is; blank
  lines (which may come before a request) do not restart that clock;
- the body's own deadline (BODY_TIMEOUT_SECONDS, 408) and size limit (413) are the app's (main.py);
- a refused request that was pipelined behind others gets its answer after theirs, then the connection closes;
- at most MAX_PIPELINED (32) requests may wait behind the one being answered: once they are answered the
  connection closes, unanswered requests after them unread (a client that pipelines must retry those);
- the rest of a body the app refused before it ended (413) is read and dropped, so a client still sending
  sees the answer, but at most DISCARD_BYTES (4 MiB) of it and within BODY_TIMEOUT_SECONDS, or the connection
  closes.
The 431, 408 and 400 answered here are counted in http_requests_total (method "unknown", route "other") and
logged.

Stopping: on SIGTERM the worker tells the app to answer /health with 503 and keeps serving for DRAIN_SECONDS
(5), so a health checker sees the task going rather than a refused connection; then it stops accepting and
finishes the requests in flight (gunicorn allows GRACEFUL_TIMEOUT for the whole, so DRAIN_SECONDS must be
below it: gunicorn_conf.py checks).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from model_server.scope import (
    ANSWERED,
    BODY_COMPLETE,
    DEFAULT_BODY_TIMEOUT_SECONDS,
    DISCARD_BYTES,
    REQUESTS_IN_FLIGHT,
)

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_DRAIN_SECONDS = 5.0
RAW_HEAD_SLACK_BYTES = 1024  # room for the request line's method, version and line ends in a raw count
# Requests a connection may queue behind the one being answered. Each costs a few KiB until its turn, and one read
# of tiny pipelined requests would otherwise queue thousands (about 8,000 and 19 MiB per 256 KiB read).
MAX_PIPELINED = 32

log = logging.getLogger("model_server")

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    value = float(raw) if raw else default
    if not value >= 0:
        raise ValueError(f"{name}={raw!r} must be a number of seconds, at least 0")
    return value


class _HeadTooLargeError(Exception):
    pass


class _TooManyPipelinedError(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head size and time bounds of the module docstring."""

    max_head_bytes = int(os.environ.get("MAX_HEADER_BYTES", "") or DEFAULT_MAX_HEADER_BYTES)
    head_timeout = _seconds("HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT_SECONDS)
    drop_timeout = _seconds("BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS)
    drop_max_bytes = DISCARD_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = self._raw_head_bytes = 0
        self._messages = 0  # requests begun on this connection
        self._in_message = self._in_body = False  # a request has begun; its head is complete (it has not ended)
        self._progressed = False  # the parser has delivered body bytes or a chunk header during this read
        self._tail_bytes = 0  # bytes since the body last progressed: chunk framing, or a chunked body's trailers
        # The status and answer refusing a pipelined request, sent after the requests ahead of it.
        self._refusal: tuple[int | None, bytes] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected_head = False
        self._too_deep = False  # a request began with MAX_PIPELINED requests queued already
        self._dropped = 0  # bytes of an answered request's body read and dropped
        self._drop_timer: asyncio.TimerHandle | None = None
        # Until it sends something, a new connection is as idle as a kept-alive one: the same timeout applies.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_drop_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED:
            self._too_deep = True
            raise _TooManyPipelinedError  # httptools stops parsing; uvicorn then calls send_400_response
        super().on_message_begin()
        self._head_bytes = self._raw_head_bytes = self._dropped = 0
        self._messages += 1
        self._in_message = True
        # Not idle any more: a keep-alive timer still armed (the last read also ended a body answered before it
        # ended, see on_message_complete) would close the connection under this request.
        self._unset_keepalive_if_required()
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # the connection ends once the requests ahead of the refused one are answered
        message, in_head, in_body = self._messages, self._head_timer is not None, self._in_body
        keep_alive = self.timeout_keep_alive_task
        idle_until = keep_alive.when() if keep_alive is not None and not self._in_message else None
        self._progressed = False
        super().data_received(data)  # uvicorn cancels the keep-alive timer before it parses anything
        if self._messages != message or self.transport.is_closing():
            return  # a request began in this read (its own bounds apply from there), or the connection is going
        if in_head and self._head_timer is not None:
            # The whole read fell inside one head: count it raw too, so that one endless header value (which the
            # parser buffers without a callback) is bounded as well. Raw bytes include the request line and line
            # ends, which the exact count (on_url, on_header) leaves out: hence the slack.
            self._raw_head_bytes += len(data)
            if self._raw_head_bytes > self.max_head_bytes + RAW_HEAD_SLACK_BYTES:
                self._rejected_head = True
                self.send_400_response("")
        elif in_body and self._in_body:
            # The whole read fell inside one body. Bytes that brought neither body nor a chunk header are chunk
            # framing or trailers, which the parser buffers as it does header values: bounded like a head.
            self._tail_bytes = 0 if self._progressed else self._tail_bytes + len(data)
            if self._tail_bytes > self.max_head_bytes + RAW_HEAD_SLACK_BYTES:
                self._refuse(431, f"the request's trailers are larger than {self.max_head_bytes} bytes")
        elif idle_until is not None and self.timeout_keep_alive_task is None:
            # Only blank lines, which may precede a request: the connection is as idle as it was, and its idle
            # timeout still runs from when it became idle, or a trickle of them would hold it open for ever.
            self.timeout_keep_alive_task = self.loop.call_at(idle_until, self.timeout_keep_alive_handler)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:  # trailers of a chunked body too
        self._count(len(name) + len(value) + 4)  # "name: value\r\n"
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._rejected_head = True
            raise _HeadTooLargeError  # httptools stops parsing; uvicorn then calls send_400_response

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_body, self._tail_bytes = True, 0
        self.scope[REQUESTS_IN_FLIGHT] = self.tasks  # type: ignore[literal-required]  # every connection's tasks
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._progressed = True

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        if self.cycle is not None and self.cycle.response_complete:
            self._drop(len(body))  # uvicorn would ignore it too, but without a bound
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_drop_timer()
        self._in_message = self._in_body = False
        self.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]
        super().on_message_complete()
        if (self.cycle is not None and self.cycle.response_complete and not self.pipeline
                and self.timeout_keep_alive_task is None and not self.transport.is_closing()):
            # The answer went before the body ended, and each dropped chunk cancelled uvicorn's keep-alive timer
            # (armed when the answer went): the connection is idle from now on, so the idle timeout applies again.
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def _drop(self, size: int) -> None:
        """The app answered before the body ended (a 413): read and drop the rest, so that the client, still
        sending, sees the answer instead of a reset; but no more than DISCARD_BYTES, nor for longer than the
        body deadline, or the connection closes."""
        if self._drop_timer is None and self._dropped == 0:
            self._drop_timer = self.loop.call_later(self.drop_timeout, self._stop_dropping, "took too long")
        self._dropped += size
        if self._dropped > self.drop_max_bytes:
            self._stop_dropping(f"went on beyond {self.drop_max_bytes} bytes")

    def _stop_dropping(self, why: str) -> None:
        self._cancel_drop_timer()
        if not self.transport.is_closing():
            log.info("closed the connection from %s: the rest of a refused body %s", self.client, why)
            self.transport.close()

    def _cancel_drop_timer(self) -> None:
        if getattr(self, "_drop_timer", None) is not None:
            self._drop_timer.cancel()  # type: ignore[union-attr]
            self._drop_timer = None

    def send_400_response(self, msg: str) -> None:
        if self._too_deep:
            self._refuse(None, f"more than {MAX_PIPELINED} requests pipelined")
        elif self._rejected_head:
            self._refuse(431, f"the request head is larger than {self.max_head_bytes} bytes")
        else:
            self._refuse(400, msg)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")

    def _cancel_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()  # type: ignore[union-attr]
            self._head_timer = None

    def _refuse(self, status: int | None, detail: str) -> None:
        """Answer `status` with `detail` and close, after any requests ahead of this one; None: close, no answer."""
        if self._in_body and self.cycle is not None and self.cycle.response_complete:
            # The app answered this request before its body ended (413): no second answer, nor a second count.
            log.info("closed the connection from %s: the rest of an answered request was refused (%s)",
                     self.client, detail)
            self.transport.close()
            return
        if self._refusal is not None:
            return  # already refused: the connection ends with that answer
        log.info("refused a request from %s with %s: %s", self.client, status or "a closed connection", detail)
        body = json.dumps({"detail": detail}).encode()
        answer = b"" if status is None else (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body))
        cycle = self.cycle  # this request's once its head is complete, else the one before it
        queued = [entry for entry in self.pipeline if entry[0] is cycle] if self._in_body else []
        if cycle is not None and not cycle.response_complete and (queued or not self._in_body):
            # Pipelined behind requests still being answered (its head, or its head complete and queued, not
            # started): answers go in order, so this one waits for theirs (on_response_complete). A queued
            # request never starts; nothing more is read meanwhile.
            for entry in queued:
                self.pipeline.remove(entry)
            self._refusal = (status, answer)
            self._cancel_head_timer()
            self.transport.pause_reading()
            return
        if cycle is not None and not cycle.response_complete and status is not None:
            # The app is handling this request already (its head was complete): it must not count it again.
            cycle.scope[ANSWERED] = status  # type: ignore[literal-required]
        self._send_refusal(status, answer)

    def _send_refusal(self, status: int | None, answer: bytes) -> None:
        from model_server import metrics  # noqa: PLC0415 - not in the gunicorn master, which loads this class

        if status is not None:
            metrics.protocol_rejection(status)  # counted once it goes out
            self.transport.write(answer)
        self.transport.close()

    def on_response_complete(self) -> None:
        last = not self.pipeline  # no request queued behind this one: after it, only the refusal is left
        super().on_response_complete()
        if self._refusal is not None and last and not self.transport.is_closing():
            self._send_refusal(*self._refusal)  # every request ahead of the refused one has its answer


class DrainingServer(Server):
    """uvicorn's server, but SIGTERM first drains for `drain_seconds` (see the module docstring)."""

    def __init__(self, config: Any, drain_seconds: float, on_drain: Callable[[], None] | None):
        super().__init__(config)
        self.drain_seconds, self.on_drain = drain_seconds, on_drain
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.drain_deadline is None and not self.should_exit and self.drain_seconds > 0:
            self.drain_deadline = time.monotonic() + self.drain_seconds
            if self.on_drain is not None:
                self.on_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)


class ModelServerWorker(UvicornWorker):
    # No X-Forwarded-* processing: the app uses neither client address nor scheme, and behind the ALB (not a
    # trusted proxy by default) it only costs time. No "server: uvicorn" header either.
    CONFIG_KWARGS: dict[str, Any] = {"loop": "auto", "http": BoundedHttpToolsProtocol,  # noqa: RUF012
                                     "proxy_headers": False, "server_header": False}

    async def _serve(self) -> None:
        self.config.app = self.wsgi
        server = DrainingServer(self.config, _seconds("DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS),
                                getattr(self.wsgi, "drain", None))
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
