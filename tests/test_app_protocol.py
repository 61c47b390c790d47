"""The HTTP layer under the app (model_server/worker.py), in process with a stand-in socket: what it tells the
app about each request (the requests in flight, a complete body), and no `server` header in its answers."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from model_server.scope import BODY_COMPLETE, REQUESTS_IN_FLIGHT
from model_server.worker import BoundedHttpToolsProtocol, ModelServerWorker
from tests.app_support import run

REQUEST = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n"


class Socket:
    """The transport a protocol writes to: keeps what it was sent."""

    def __init__(self) -> None:
        self.sent = b""
        self.closed = False

    def write(self, data: bytes) -> None:
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


def test_the_app_learns_how_many_requests_are_in_flight_and_whether_the_body_has_arrived() -> None:
    seen: list[tuple[int, bool]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((len(scope[REQUESTS_IN_FLIGHT]), BODY_COMPLETE in scope))
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def scenario() -> list[Socket]:
        settings = {k: v for k, v in ModelServerWorker.CONFIG_KWARGS.items() if k != "loop"}
        config = Config(app=app, **settings)
        config.load()
        state = ServerState()
        sockets = []
        # Three connections whose bytes arrive in the same loop iteration, before any request has started; the
        # last one's body is not complete yet.
        for data in (REQUEST + b"12345678", REQUEST + b"12345678", REQUEST + b"1234"):
            protocol = BoundedHttpToolsProtocol(config=config, server_state=state, app_state={})
            sockets.append(Socket())
            protocol.connection_made(sockets[-1])  # type: ignore[arg-type]
            protocol.data_received(data)
        await asyncio.sleep(0.01)
        protocol.data_received(b"5678")
        await asyncio.sleep(0.01)
        return sockets

    sockets = run(scenario())
    assert seen == [(3, True), (3, True), (3, False)]
    assert all(s.sent.startswith(b"HTTP/1.1 200 ") and b"server:" not in s.sent.lower() for s in sockets)
