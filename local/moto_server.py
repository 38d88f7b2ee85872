"""moto's server mode on loopback, one request at a time.

moto's own ThreadedMotoServer runs its backends on a thread per request with no lock, and its
DynamoDB backend's TransactWriteItems (moto/dynamodb/models/__init__.py) copies each table it
touches, applies the items, and when a condition fails puts the copies back: whatever another
thread wrote to that table meanwhile is undone with it. Under load that admitted a sixth stream
under a limit of five (tests/integration/test_shared_quotas.py), a race the real service cannot
have: its transactions are atomic and serializable ("Isolation levels for DynamoDB
transactions", the DynamoDB developer guide). So this server holds a lock around each request,
which makes moto's writes as serial as DynamoDB's, while connections keep threads of their own.
moto's requests are short (every response is buffered), so the lock costs nothing a test can see."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer


class _OneAtATime:
    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            # Read the whole body inside the lock: a response is produced lazily by some apps.
            return list(self._app(environ, start_response))


class MotoServer:
    """`start()`, then `url`, then `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app: Any = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        server = make_server(
            self._host, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
