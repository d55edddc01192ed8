"""HTTP servers the tests run on 127.0.0.1 in a thread: an embeddings API, a webhook, Qdrant."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A handler that answers JSON and keeps the test output free of access logs."""

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def reply_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        encoded = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve on a free port of 127.0.0.1 until the block ends; yields `http://127.0.0.1:PORT`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# A Slack-like webhook path; its token part is a secret that must never reach a log.
WEBHOOK_TOKEN = "T0000/B0000/planted-webhook-token"


@dataclass
class Webhook:
    url: str
    status: int
    posts: list[tuple[str, str, dict]] = field(default_factory=list)


@contextmanager
def webhook_server(status: int = 200) -> Iterator[Webhook]:
    """A Slack-like incoming webhook on loopback that records every POST."""
    webhook = Webhook(url="", status=status)

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            webhook.posts.append((self.path, self.headers["Content-Type"], self.read_json()))
            self.reply_json(webhook.status, "ok")

    with serve_on_loopback(Handler) as url:
        webhook.url = f"{url}/services/{WEBHOOK_TOKEN}"
        yield webhook
