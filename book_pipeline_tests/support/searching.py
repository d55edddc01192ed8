"""A customer who searches every 0.2 s while the pipeline works: what each search answered
from, how long it took, and what failed (the model-change test and benchmark share it)."""

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from book_pipeline.core.embedding.choosing import choose_embedder
from book_pipeline.core.ingest.rebuild import current_version
from book_pipeline.core.search import search_books
from book_pipeline.core.settings import EmbedderChoice
from book_pipeline.core.store.versions import VersionCatalog

SEARCH_INTERVAL_SECONDS = 0.2


@dataclass(frozen=True)
class Answer:
    collection: str
    # The points of the version that answered, counted right after the search.
    points: int
    hits: int
    seconds: float


@dataclass
class Searcher:
    """Searches the current version with its own model, as `book-pipeline search` does."""

    open_versions: Callable[[], AbstractContextManager[VersionCatalog]]
    configured: EmbedderChoice
    configured_model: str
    query: str = "a long journey"
    answers: list[Answer] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._search_until_stopped, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _search_until_stopped(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with self.open_versions() as catalog:
                    version, choice = current_version(
                        catalog, self.configured, self.configured_model
                    )
                    hits = search_books(version, choose_embedder(choice), self.query, 3)
                    found = (version.collection, version.count(), len(hits))
                self.answers.append(Answer(*found, time.perf_counter() - started))
            except BaseException as error:
                self.errors.append(error)
            self._stop.wait(SEARCH_INTERVAL_SECONDS)
