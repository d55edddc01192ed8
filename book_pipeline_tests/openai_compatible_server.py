"""A small HTTP server on loopback that speaks the OpenAI embeddings API, for the real client.

It answers `POST /v1/embeddings` with deterministic vectors (hashed from the text) and can be told
to fail the next requests with given status codes, to prove the client's retries.
"""

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def text_vector(text: str, dimensions: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dimensions).tolist()


@dataclass
class EmbeddingsServerState:
    dimensions: int = 12
    failures_to_inject: list[int] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    authorization_headers: list[str] = field(default_factory=list)


def _handler_for(state: EmbeddingsServerState) -> type[BaseHTTPRequestHandler]:
    class EmbeddingsHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.authorization_headers.append(self.headers.get("Authorization", ""))
            if self.path != "/v1/embeddings":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
            elif state.failures_to_inject:
                status = state.failures_to_inject.pop(0)
                self._reply(status, {"error": {"message": "injected failure", "type": "test"}})
            else:
                dimensions = body.get("dimensions", state.dimensions)
                inputs = body["input"]
                data = [
                    {"object": "embedding", "index": i, "embedding": text_vector(text, dimensions)}
                    for i, text in enumerate(inputs)
                ]
                usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
                # Reversed on purpose: the API does not promise order, the index field does.
                self._reply(
                    200,
                    {"object": "list", "data": data[::-1], "model": body["model"], "usage": usage},
                )

        def _reply(self, status: int, payload: dict) -> None:
            state.statuses.append(status)
            encoded = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            if status == 429:
                self.send_header("Retry-After-Ms", "10")
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return EmbeddingsHandler


@contextmanager
def embeddings_server(state: EmbeddingsServerState) -> Iterator[str]:
    """Serve on 127.0.0.1 (a free port) and yield the base URL for the openai client."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
