"""A throwaway HTTP server on 127.0.0.1 for tests that need something to answer GET (and POST) requests."""

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def serving(respond: Callable[[str], tuple[int, bytes]],
            respond_post: Callable[[str, bytes], tuple[int, bytes]] | None = None) -> Iterator[int]:
    """Answer every GET with `respond(path) -> (status, body)` and every POST with `respond_post(path, body)`;
    yield the port; stop on exit."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(*respond(self.path))

        def do_POST(self) -> None:
            assert respond_post is not None, "this server answers GET only"
            received = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(*respond_post(self.path, received))

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # keep the test output clean

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
