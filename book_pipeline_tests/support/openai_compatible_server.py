"""A small HTTP server on loopback that speaks the OpenAI embeddings API, for the real client.

It answers `POST /v1/embeddings` with deterministic vectors (hashed from the text) and the usage
OpenAI would bill (each input's tokens in cl100k_base), and can be told to fail the next requests
with given status codes, to prove the client's retries, or to hold every request until released
(a slow endpoint, as slow as the test needs).
"""

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import bpe_openai
import numpy as np

from book_pipeline_tests.support.loopback_http import JsonHandler, serve_on_loopback

_CL100K = bpe_openai.get_encoding("cl100k_base")


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
    # What the answers' usage reported, summed.
    billed_tokens: int = 0
    # Cleared: requests wait until it is set. `held` is set once a request waits.
    released: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    held: threading.Event = field(default_factory=threading.Event)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def _handler_for(state: EmbeddingsServerState) -> type[JsonHandler]:
    class EmbeddingsHandler(JsonHandler):
        def do_POST(self) -> None:
            body = self.read_json()
            if not state.released.is_set():
                state.held.set()
                state.released.wait()
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
                # Counted here with the tokenizer itself, not with the code under test.
                tokens = sum(len(_CL100K.encode_ordinary(text)) for text in inputs)
                state.billed_tokens += tokens
                usage = {"prompt_tokens": tokens, "total_tokens": tokens}
                # Reversed on purpose: the API does not promise order, the index field does.
                self._reply(
                    200,
                    {"object": "list", "data": data[::-1], "model": body["model"], "usage": usage},
                )

        def _reply(self, status: int, payload: dict) -> None:
            state.statuses.append(status)
            # The openai client honours this: its retries after a 429 wait 10 ms, not seconds.
            headers = {"Retry-After-Ms": "10"} if status == 429 else None
            self.reply_json(status, payload, headers)

    return EmbeddingsHandler


@contextmanager
def embeddings_server(state: EmbeddingsServerState) -> Iterator[str]:
    """Serve on 127.0.0.1 (a free port) and yield the base URL for the openai client."""
    with serve_on_loopback(_handler_for(state)) as url:
        yield f"{url}/v1"
