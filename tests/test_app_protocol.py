"""The HTTP layer under the app (model_server/worker.py), in process with a stand-in socket: the bound on a request
head, what it tells the app about each request (the requests in flight, a complete body), how it drops the rest
of a body the app refused before it ended, and no `server` header in its answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from model_server.scope import BODY_COMPLETE, DISCARD_BYTES, REQUESTS_IN_FLIGHT
from model_server.worker import MAX_PIPELINED, RAW_HEAD_SLACK_BYTES, BoundedHttpToolsProtocol, ModelServerWorker
from tests.app_support import run

REQUEST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n"
REQUEST_WITHOUT_BODY = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


class Socket:
    """The transport a protocol writes to: keeps what it was sent."""

    def __init__(self) -> None:
        self.sent = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        if not self.closed:  # as a real transport: nothing goes out once it is closing
            self.sent += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: Any) -> None: ...


def connection(app: Any, drop_timeout: float = 30.0, keep_alive: float = 5.0,
               state: ServerState | None = None) -> tuple[BoundedHttpToolsProtocol, Socket]:
    """A connection to a protocol configured as the worker configures it (sharing `state` with others)."""
    settings = {k: v for k, v in ModelServerWorker.CONFIG_KWARGS.items() if k != "loop"}
    config = Config(app=app, timeout_keep_alive=keep_alive, **settings)  # type: ignore[arg-type]
    config.load()
    protocol = BoundedHttpToolsProtocol(config=config, server_state=state or ServerState(), app_state={})
    protocol.drop_timeout = drop_timeout
    socket = Socket()
    protocol.connection_made(socket)  # type: ignore[arg-type]
    return protocol, socket


async def ok(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, then answers 200 with no content."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def slow_ok(scope: Any, receive: Any, send: Any) -> None:
    """`ok` after 10 ms: time for the requests behind it to queue."""
    await asyncio.sleep(0.01)
    await ok(scope, receive, send)


def test_the_app_learns_how_many_requests_are_in_flight_and_whether_the_body_has_arrived() -> None:
    seen: list[tuple[int, bool]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((len(scope[REQUESTS_IN_FLIGHT]), BODY_COMPLETE in scope))
        await ok(scope, receive, send)

    async def scenario() -> list[Socket]:
        state = ServerState()
        sockets = []
        # Three connections whose bytes arrive in the same loop iteration, before any request has started; the
        # last one's body is not complete yet.
        for data in (REQUEST + b"12345678", REQUEST + b"12345678", REQUEST + b"1234"):
            protocol, socket = connection(app, state=state)
            sockets.append(socket)
            protocol.data_received(data)
        await asyncio.sleep(0.01)
        protocol.data_received(b"5678")
        await asyncio.sleep(0.01)
        return sockets

    sockets = run(scenario())
    assert seen == [(3, True), (3, True), (3, False)]
    assert all(s.sent.startswith(b"HTTP/1.1 200 ") and b"server:" not in s.sent.lower() for s in sockets)


CHUNKED = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(size: int) -> bytes:
    return b"%x\r\n%s\r\n" % (size, b"[" * size)


async def refuse_at_once(scope: Any, receive: Any, send: Any) -> None:
    """Answers 413 without reading the body, as the app does once a body without a length passes its limit."""
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(("rest", "stays_open"), [
    (DISCARD_BYTES // 65536, True),  # the rest fits: dropped, and the connection serves the next request
    (DISCARD_BYTES // 65536 + 2, False),  # beyond DISCARD_BYTES: closed
])
def test_the_rest_of_a_refused_body_is_dropped_up_to_its_bound_so_the_client_sees_the_answer(
        rest: int, stays_open: bool) -> None:
    async def scenario() -> Socket:
        protocol, socket = connection(refuse_at_once)
        protocol.data_received(CHUNKED + chunk(65536))
        await asyncio.sleep(0.01)  # the app answers 413 with the body still arriving
        assert socket.sent.startswith(b"HTTP/1.1 413 ") and not socket.closed
        for _ in range(rest):
            protocol.data_received(chunk(65536))
        if stays_open:
            protocol.data_received(b"0\r\n\r\n" + CHUNKED + chunk(1))
            await asyncio.sleep(0.01)
            assert socket.sent.count(b"HTTP/1.1 413 ") == 2  # the next request on the connection was answered
        return socket

    assert run(scenario()).closed is not stays_open


def test_the_rest_of_a_refused_body_must_come_within_the_body_deadline() -> None:
    async def scenario() -> Socket:
        protocol, socket = connection(refuse_at_once, drop_timeout=0.025)
        protocol.data_received(CHUNKED + chunk(100))
        await asyncio.sleep(0.002)
        protocol.data_received(chunk(100))  # a trickle after the answer
        await asyncio.sleep(0.003)
        assert not socket.closed
        await asyncio.sleep(0.025)
        return socket

    assert run(scenario()).closed


def test_a_connection_idle_after_dropping_a_refused_body_closes_after_the_keep_alive_timeout() -> None:
    async def scenario() -> list[bool]:
        protocol, socket = connection(refuse_at_once, keep_alive=0.025)
        protocol.data_received(CHUNKED + chunk(100))
        await asyncio.sleep(0.002)
        protocol.data_received(chunk(100) + b"0\r\n\r\n")  # the rest, dropped; then nothing more
        await asyncio.sleep(0.003)
        open_while_fresh = not socket.closed
        await asyncio.sleep(0.025)
        return [open_while_fresh, socket.closed]

    assert run(scenario()) == [True, True]


def test_a_head_that_never_ends_is_431_within_a_chunk_of_the_limit_even_inside_one_header_value() -> None:
    async def scenario() -> tuple[Socket, int]:
        protocol, socket = connection(refuse_at_once)
        protocol.data_received(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: ")  # the parser buffers the value
        sent = 0
        while not socket.closed and sent < 100:
            protocol.data_received(b"a" * 4096)
            sent += 1
        return socket, sent * 4096

    socket, sent = run(scenario())
    assert socket.sent.startswith(b"HTTP/1.1 431 ") and socket.closed
    assert sent <= BoundedHttpToolsProtocol.max_head_bytes + 4096


@pytest.mark.parametrize("split", [None, 16, 16390], ids=["one read", "a tiny first read", "a large first read"])
@pytest.mark.parametrize(("pad", "status"), [(0, b"200"), (1, b"431")])
def test_a_complete_head_is_measured_exactly_however_it_is_split(pad: int, status: bytes, split: int | None) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: "
    # The limit counts the target and each "name: value\r\n"; this head is exactly at it, or one byte over.
    fixed = len(b"/health") + len(b"host: x\r\n") + len(b"x-pad: \r\n")
    value = b"a" * (BoundedHttpToolsProtocol.max_head_bytes - fixed + pad)

    async def scenario() -> Socket:
        protocol, socket = connection(ok)
        data = head + value + b"\r\n\r\n"
        for part in ([data] if split is None else [data[:split], data[split:]]):
            protocol.data_received(part)
        await asyncio.sleep(0.01)
        return socket

    assert run(scenario()).sent.startswith(b"HTTP/1.1 " + status + b" ")


def test_the_next_request_s_head_arriving_with_a_large_body_is_not_counted_with_it() -> None:
    async def echo_length(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(str(len(body))))]})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    async def scenario() -> Socket:
        protocol, socket = connection(echo_length)
        body = b"x" * 20000  # more than the head limit, in the same read as the start of the next head
        protocol.data_received(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + body
                               + b"GET /health HTTP/1.1\r\nHo")
        await asyncio.sleep(0.01)
        protocol.data_received(b"st: x\r\n\r\n")
        await asyncio.sleep(0.01)
        return socket

    sent = run(scenario()).sent
    assert sent.count(b"HTTP/1.1 200 ") == 2 and b" 431 " not in sent
    assert sent.split(b"\r\n\r\n")[1].startswith(b"20000")  # the first answer is the POST's


async def read_all(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body (trailers too, which come before its end), then answers 200 with no content."""
    while (await receive()).get("more_body"):
        pass
    await ok(scope, lambda: asyncio.sleep(0), send)


@pytest.mark.parametrize("answered_first", [False, True], ids=["a new connection", "after an answer"])
def test_blank_lines_do_not_restart_an_idle_connection_s_timeout(answered_first: bool) -> None:
    async def scenario() -> tuple[list[bool], bool]:
        protocol, socket = connection(ok, keep_alive=0.04)
        if answered_first:
            protocol.data_received(REQUEST + b"12345678")
            await asyncio.sleep(0.002)
            assert socket.sent.startswith(b"HTTP/1.1 200 ")
        assert protocol.timeout_keep_alive_task is not None
        idle_until = protocol.timeout_keep_alive_task.when()
        unchanged = []
        for _ in range(3):  # blank lines may come before a request; a trickle of them must not hold it open
            await asyncio.sleep(0.003)
            protocol.data_received(b"\r\n")
            unchanged.append(protocol.timeout_keep_alive_task is not None
                             and protocol.timeout_keep_alive_task.when() == idle_until)
        await asyncio.sleep(idle_until - asyncio.get_running_loop().time() + 0.003)
        return unchanged, socket.closed

    assert run(scenario()) == ([True, True, True], True)


def test_blank_lines_before_a_request_are_allowed() -> None:
    async def scenario() -> Socket:
        protocol, socket = connection(ok)
        protocol.data_received(b"\r\n\r\n")
        protocol.data_received(b"\r\n" + REQUEST + b"12345678")
        await asyncio.sleep(0.01)
        return socket

    socket = run(scenario())
    assert socket.sent.startswith(b"HTTP/1.1 200 ") and not socket.closed


LIMIT = BoundedHttpToolsProtocol.max_head_bytes


@pytest.mark.parametrize(("trailer", "status"), [
    (b"X-Checksum: " + b"a" * 1000 + b"\r\n\r\n", b"200"),  # trailers are allowed
    (b"X-Checksum: " + b"a" * LIMIT + b"\r\n\r\n", b"431"),  # a complete trailer past the limit
    (b"X-Checksum: " + b"a" * 4 * LIMIT, b"431"),  # one value that does not end: the parser buffers it
], ids=["allowed", "too large", "endless"])
def test_a_chunked_body_s_trailers_are_bounded_like_a_head(trailer: bytes, status: bytes) -> None:
    async def scenario() -> tuple[Socket, int]:
        protocol, socket = connection(read_all)
        protocol.data_received(CHUNKED + chunk(10))
        protocol.data_received(b"0\r\n")  # the last chunk: the trailers follow, then an empty line
        read = 0
        while read < len(trailer) and not socket.closed:
            protocol.data_received(trailer[read:read + 4096])
            read += 4096
        await asyncio.sleep(0.01)
        if socket.closed:
            protocol.connection_lost(None)  # as the event loop tells a protocol whose transport closed
            await asyncio.sleep(0.005)  # the app learns of the disconnect and ends
        return socket, read

    socket, read = run(scenario())
    assert socket.sent.startswith(b"HTTP/1.1 " + status + b" ")
    assert read <= LIMIT + RAW_HEAD_SLACK_BYTES + 4096  # refused within a read of the limit


def statuses(sent: bytes) -> list[bytes]:
    return [line.split(b" ")[1] for line in sent.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


@pytest.mark.parametrize("trailer", [b"X-A: " + b"a" * 4 * LIMIT, b"X-A: " + b"a" * LIMIT + b"\r\n\r\n"],
                         ids=["endless", "too large"])
def test_trailers_too_large_after_the_app_answered_close_the_connection_without_a_second_answer(
        trailer: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_server import metrics  # noqa: PLC0415

    counted: list[int] = []
    monkeypatch.setattr(metrics, "protocol_rejection", counted.append)

    async def scenario() -> Socket:
        protocol, socket = connection(refuse_at_once)
        protocol.data_received(CHUNKED + chunk(100))
        await asyncio.sleep(0.01)  # answered 413 with the body still arriving: the rest is dropped
        protocol.data_received(b"0\r\n")
        for start in range(0, len(trailer), 4096):
            if socket.closed:
                break
            protocol.data_received(trailer[start:start + 4096])
        return socket

    socket = run(scenario())
    assert socket.closed and statuses(socket.sent) == [b"413"] and counted == []


def test_a_request_that_follows_a_dropped_body_in_the_same_read_is_not_cut_off_by_the_idle_timeout() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if dict(scope["headers"]).get(b"transfer-encoding"):
            await refuse_at_once(scope, receive, send)
        else:
            await asyncio.sleep(0.02)  # a request that takes longer than the idle timeout
            await ok(scope, receive, send)

    async def scenario() -> Socket:
        protocol, socket = connection(app, keep_alive=0.01)
        protocol.data_received(CHUNKED + chunk(100))
        await asyncio.sleep(0.002)
        protocol.data_received(chunk(100) + b"0\r\n\r\n" + REQUEST + b"12345678")  # the next request, same read
        await asyncio.sleep(0.05)
        return socket

    assert statuses(run(scenario()).sent) == [b"413", b"200"]


OVERSIZED_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * LIMIT + b"\r\n\r\n"


@pytest.mark.parametrize(("ahead", "refused", "status"), [
    (1, OVERSIZED_HEAD, b"431"),
    (2, OVERSIZED_HEAD, b"431"),
    (1, b"GET /health HTTP/1.1\r\nHo", b"408"),  # a head that stops: its timeout passes while the first is answered
    (1, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n", b"400"),
    # Refused once its head is complete, while it waits its turn: it never starts.
    (1, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", b"400"),
    (1, CHUNKED + b"zz\r\n", b"400"),
], ids=["431", "431 behind two", "408", "400", "400 for its transfer encoding", "400 for its chunk size"])
def test_a_refused_pipelined_request_is_answered_after_the_requests_ahead_of_it(
        ahead: int, refused: bytes, status: bytes) -> None:
    started: list[str] = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        started.append(scope["path"])
        await slow_ok(scope, receive, send)

    async def scenario() -> Socket:
        protocol, socket = connection(slow)
        protocol.head_timeout = 0.003
        protocol.data_received((REQUEST + b"12345678") * ahead + refused)
        await asyncio.sleep(0.01 * ahead + 0.03)
        return socket

    socket = run(scenario())
    assert statuses(socket.sent) == [b"200"] * ahead + [status] and socket.closed
    assert started == ["/predict"] * ahead


def test_a_refusal_that_never_goes_out_is_not_counted() -> None:
    """The request ahead of a refused one closes the connection (here the server is stopping): no refusal."""
    from model_server import metrics  # noqa: PLC0415

    def refused() -> float:
        return float(metrics.REQUESTS.labels("unknown", metrics.OTHER_ROUTE, "400")._value.get())

    async def scenario() -> Socket:
        protocol, socket = connection(slow_ok)
        protocol.data_received(REQUEST + b"12345678" + b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n")
        protocol.shutdown()
        await asyncio.sleep(0.03)
        return socket

    before = refused()
    socket = run(scenario())
    assert statuses(socket.sent) == [b"200"] and socket.closed and refused() == before


@pytest.mark.parametrize(("sent", "answered"), [(MAX_PIPELINED + 1, MAX_PIPELINED + 1), (500, MAX_PIPELINED + 1)],
                         ids=["as many as may queue", "more"])
def test_pipelined_requests_queue_up_to_a_bound_then_the_connection_closes(sent: int, answered: int) -> None:
    async def scenario() -> tuple[Socket, int]:
        protocol, socket = connection(ok)
        protocol.data_received(REQUEST_WITHOUT_BODY * sent)  # one read: the first is answered, the rest queue
        queued = len(protocol.pipeline)
        await asyncio.sleep(0.02)
        return socket, queued

    socket, queued = run(scenario())
    assert queued <= MAX_PIPELINED
    assert statuses(socket.sent) == [b"200"] * answered
    assert socket.closed is (sent > answered)  # the rest unread and unanswered: the client retries them
