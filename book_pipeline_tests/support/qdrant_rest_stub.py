"""A stand-in for a Qdrant server on loopback: the REST routes book_pipeline uses, nothing more.

No Qdrant server can be installed here (it is on none of the reachable package registries), so
the server code paths are tested against this stub: the real `QdrantClient(url=...)` sends real
HTTP requests, the stub parses each body with qdrant-client's own REST models (a malformed request
fails), records it, and answers from qdrant-client's in-memory local mode. It proves what the
pipeline sends and that the server branch of the code works end to end; it proves nothing about
a real server's sharding, replication, indexing or concurrency.
"""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import QdrantClient, models

from book_pipeline_tests.support.loopback_http import JsonHandler, serve_on_loopback

STUB_VERSION = "1.20.0"


@dataclass
class QdrantStubState:
    api_key: str | None = None
    # What `GET /` reports: the pipeline refuses a server older than it needs.
    version: str = STUB_VERSION
    local: QdrantClient = field(default_factory=lambda: QdrantClient(location=":memory:"))
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (method, path without query, parsed JSON body or None), in arrival order
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    api_key_headers: list[str | None] = field(default_factory=list)

    def bodies(self, method: str, path_pattern: str) -> list[Any]:
        return [
            body
            for request_method, path, body in self.requests
            if request_method == method and re.fullmatch(path_pattern, path)
        ]


_UPDATED = {"operation_id": 0, "status": "completed"}


def _route(state: QdrantStubState, method: str, path: str, body: Any) -> Any:
    local = state.local
    if (method, path) == ("GET", "/"):
        return {"title": "qdrant - vector search engine (stub)", "version": state.version}
    if (method, path) == ("GET", "/collections"):
        return {"collections": [c.model_dump() for c in local.get_collections().collections]}
    if (method, path) == ("GET", "/aliases"):
        return local.get_aliases().model_dump(mode="json")
    if (method, path) == ("POST", "/collections/aliases"):
        # All the request's operations under the stub's lock: atomic, as a server applies them.
        actions = models.ChangeAliasesOperation(**body).actions
        return local.update_collection_aliases(change_aliases_operations=actions)
    match = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
    if match is None:
        raise LookupError(path)
    name, rest = match.group(1), match.group(2) or ""
    handlers: dict[tuple[str, str], Callable[[], Any]] = {
        ("GET", "/exists"): lambda: {"exists": local.collection_exists(name)},
        ("PUT", ""): lambda: _create_collection(local, name, models.CreateCollection(**body)),
        ("GET", ""): lambda: local.get_collection(name).model_dump(mode="json"),
        ("DELETE", ""): lambda: local.delete_collection(name),
        ("PATCH", ""): lambda: local.update_collection(
            name, metadata=models.UpdateCollection(**body).metadata
        ),
        # Local mode keeps no payload indexes; the request is parsed and recorded only.
        ("PUT", "/index"): lambda: models.CreateFieldIndex(**body) and _UPDATED,
        ("PUT", "/points"): lambda: local.upsert(
            name, points=models.PointsList(**body).points
        ).model_dump(mode="json"),
        ("POST", "/points/payload"): lambda: _set_payload(local, name, models.SetPayload(**body)),
        ("POST", "/points/delete"): lambda: local.delete(
            name, points_selector=_points_selector(body)
        ).model_dump(mode="json"),
        ("POST", "/points"): lambda: _retrieve(local, name, models.PointRequest(**body)),
        ("POST", "/points/count"): lambda: _count(local, name, models.CountRequest(**body)),
        ("POST", "/points/scroll"): lambda: _scroll(local, name, models.ScrollRequest(**body)),
        ("POST", "/points/query"): lambda: _query(local, name, models.QueryRequest(**body)),
        ("POST", "/facet"): lambda: _facet(local, name, models.FacetRequest(**body)),
    }
    handler = handlers.get((method, rest))
    if handler is None:
        raise LookupError(path)
    return handler()


def _create_collection(local: QdrantClient, name: str, request: models.CreateCollection) -> bool:
    return local.create_collection(name, vectors_config=request.vectors, metadata=request.metadata)


def _points_selector(body: dict) -> models.PointsSelector:
    if "filter" in body:
        return models.FilterSelector(**body)
    return models.PointIdsList(**body)


def _set_payload(local: QdrantClient, name: str, request: models.SetPayload) -> dict:
    selector: models.PointsSelector
    if request.filter is not None:
        selector = models.FilterSelector(filter=request.filter)
    else:
        selector = models.PointIdsList(points=request.points or [])
    return local.set_payload(name, payload=request.payload, points=selector).model_dump(mode="json")


def _retrieve(local: QdrantClient, name: str, request: models.PointRequest) -> list:
    records = local.retrieve(
        name,
        ids=request.ids,
        with_payload=request.with_payload if request.with_payload is not None else True,
        with_vectors=request.with_vector or False,
    )
    return [record.model_dump(mode="json") for record in records]


def _count(local: QdrantClient, name: str, request: models.CountRequest) -> dict:
    return {
        "count": local.count(name, count_filter=request.filter, exact=bool(request.exact)).count
    }


def _scroll(local: QdrantClient, name: str, request: models.ScrollRequest) -> dict:
    points, next_offset = local.scroll(
        name,
        scroll_filter=request.filter,
        limit=request.limit or 10,
        offset=request.offset,
        with_payload=request.with_payload if request.with_payload is not None else True,
        with_vectors=request.with_vector or False,
    )
    return {
        "points": [point.model_dump(mode="json") for point in points],
        "next_page_offset": next_offset,
    }


def _query(local: QdrantClient, name: str, request: models.QueryRequest) -> dict:
    response = local.query_points(
        name,
        query=request.query,
        query_filter=request.filter,
        limit=request.limit or 10,
        with_payload=request.with_payload if request.with_payload is not None else False,
    )
    return {"points": [point.model_dump(mode="json") for point in response.points]}


def _facet(local: QdrantClient, name: str, request: models.FacetRequest) -> dict:
    response = local.facet(
        name,
        key=request.key,
        facet_filter=request.filter,
        limit=request.limit or 10,
        exact=bool(request.exact),
    )
    return response.model_dump(mode="json")


def _handler_for(state: QdrantStubState) -> type[JsonHandler]:
    class QdrantStubHandler(JsonHandler):
        def do_GET(self) -> None:
            self._answer("GET")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PATCH(self) -> None:
            self._answer("PATCH")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def _answer(self, method: str) -> None:
            body = self.read_json() if int(self.headers.get("Content-Length") or 0) else None
            path = self.path.split("?", 1)[0]
            with state.lock:
                state.requests.append((method, path, body))
                state.api_key_headers.append(self.headers.get("api-key"))
                if state.api_key is not None and self.headers.get("api-key") != state.api_key:
                    self.reply_json(401, {"status": {"error": "Must provide an API key"}})
                    return
                try:
                    result = _route(state, method, path, body)
                except LookupError:
                    self.reply_json(404, {"status": {"error": f"no route {method} {path}"}})
                    return
                except (ValueError, KeyError) as error:
                    self.reply_json(400, {"status": {"error": f"Bad request: {error}"}})
                    return
            if path == "/":
                self.reply_json(200, result)
            else:
                self.reply_json(200, {"result": result, "status": "ok", "time": 0.0})

    return QdrantStubHandler


@contextmanager
def qdrant_rest_stub(state: QdrantStubState) -> Iterator[str]:
    """Serve on a free loopback port; yields the URL to use as QDRANT_URL."""
    try:
        with serve_on_loopback(_handler_for(state)) as url:
            yield url
    finally:
        state.local.close()
