"""Which Qdrant servers the pipeline can use: 1.16 or later, checked when it connects.

The collection's stamp (its model, generation and load sequence: what tells this collection
from a deleted, replaced or restored one) lives in Qdrant's collection metadata, which servers
have kept since 1.16 (qdrant/qdrant-client#1084, #1089). An older server would drop it without
an error, every load would then look like the first into a new collection, and every file would
be loaded again. So an older server is refused, by its version, before anything is written.
"""

from __future__ import annotations

import re

from book_pipeline.core.store.errors import StoreRefusedError

MIN_SERVER_VERSION = (1, 16)
_VERSION = re.compile(r"v?(\d+)\.(\d+)")


class ServerTooOldError(StoreRefusedError):
    """The Qdrant server is older than the pipeline needs; nothing was sent but the question."""


def required_version() -> str:
    return ".".join(str(part) for part in MIN_SERVER_VERSION)


def check_server_version(version: str, url: str) -> None:
    """Refuse a server older than `MIN_SERVER_VERSION`, or one whose version cannot be read."""
    match = _VERSION.match(version.strip())
    if match is not None and (int(match.group(1)), int(match.group(2))) >= MIN_SERVER_VERSION:
        return
    reported = f"reports version {version!r}" if version else "reports no version"
    raise ServerTooOldError(
        f"the Qdrant server at {url} {reported}; book_pipeline needs Qdrant "
        f"{required_version()} or later, whose collection metadata keeps the collection's stamp "
        "(its model, generation and load sequence; without it every load would load every file "
        "again). Upgrade the server, or unset QDRANT_URL to use the embedded store"
    )
