"""The default search on both engines (Edge, and the server's API through qdrant-client's local
mode), for each kind of query a bookstore customer types; and the lift of name matches alone."""

import warnings
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from qdrant_client import QdrantClient

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file, parse_book_text
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import search_books
from book_pipeline.core.store.base import BookVectorStore, ScoredPoint
from book_pipeline.core.store.name_matches import NameMatchLift, lift_name_matches
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import LOCAL_MODE_ENGINE, QdrantClientStore

# Descriptions that, like the bookstore set's, never name the author or repeat the title.
ACCENTED_BOOKS = parse_book_text(
    "1 ::: One Hundred Years of Solitude (1967) ::: Gabriel García Márquez ::: Seven "
    "generations of a family in a remote jungle town, where the miraculous is ordinary.\n"
    "2 ::: Solaris (1961) ::: Stanisław Lem ::: Scientists orbiting an ocean planet are "
    "visited by figures from their own memories.\n",
    "accented.txt",
)
ENGINES = ("qdrant-edge", "qdrant-client-local")
# (query, kind, the book that must come first in the default mode)
CUSTOMER_QUERIES = [
    ("Bram Stoker", "author_full", "Dracula"),
    ("Gabriel Garcia Marquez", "author_full", "One Hundred Years of Solitude"),
    ("machiavelli", "author_surname", "The Prince"),
    ("bronte", "author_surname", "Jane Eyre"),
    ("lem", "author_surname", "Solaris"),
    ("baskervilles", "title_words", "The Hound of the Baskervilles"),
    ("decline roman empire", "title_words",
     "The History of the Decline and Fall of the Roman Empire"),
    ("verne submarine voyage", "author_and_topic", "Twenty Thousand Leagues Under the Sea"),
    ("a vampire count travels to England", "meaning", "Dracula"),
    ("agatha cristie", "misspelled", "The Mysterious Affair at Styles"),
    ("frankenstien", "misspelled", "Frankenstein"),
    ("tocquevile", "misspelled", "Democracy in America"),
]  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BookVectorStore]]:
    embedder = shared_local_embedder()
    files = [parse_book_file(path) for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))]
    loads = [(parsed.books, parsed.sha256) for parsed in files] + [(ACCENTED_BOOKS, "sha")]
    with ExitStack() as stack:
        engines = {
            "qdrant-edge": stack.enter_context(
                open_vector_store("books", tmp_path_factory.mktemp("names") / "edge")
            ),
            "qdrant-client-local": QdrantClientStore(
                QdrantClient(":memory:"), "books", ":memory:", engine=LOCAL_MODE_ENGINE
            ),
        }
        for store in engines.values():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Payload indexes have no effect")
                store.ensure_collection(embedder.dimension, embedder.model_name)
            for books, sha in loads:
                vectors = embedder.embed([book.embedding_text for book in books])
                store.upsert_books(books, vectors, sha)
        yield engines
        engines["qdrant-client-local"].close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("query", "kind", "title"), CUSTOMER_QUERIES)
def test_each_kind_of_customer_query_finds_its_book_first(
    stores: dict[str, BookVectorStore], engine: str, query: str, kind: str, title: str
) -> None:
    hits = search_books(stores[engine], shared_local_embedder(), query, 3)
    assert hits[0].title == title, f"{kind}: {[hit.title for hit in hits]}"


@pytest.mark.parametrize("engine", ENGINES)
def test_an_authors_books_all_come_before_any_other(
    stores: dict[str, BookVectorStore], engine: str
) -> None:
    hits = search_books(stores[engine], shared_local_embedder(), "H. G. Wells", 4)
    assert {hit.author for hit in hits[:3]} == {"H. G. Wells"} and hits[3].author != "H. G. Wells"


@pytest.mark.parametrize("engine", ENGINES)
def test_keyword_search_folds_accents_in_books_and_queries(
    stores: dict[str, BookVectorStore], engine: str
) -> None:
    embedder = shared_local_embedder()
    [bronte] = search_books(stores[engine], embedder, "bronte", 1, mode="keyword")
    [marquez] = search_books(stores[engine], embedder, "garcia marquez", 1, mode="keyword")
    [accented] = search_books(stores[engine], embedder, "Brontë", 1, mode="keyword")
    assert bronte.author == accented.author == "Charlotte Brontë"
    assert marquez.author == "Gabriel García Márquez"


@pytest.mark.parametrize("engine", ENGINES)
def test_filters_hold_for_lifted_name_matches(
    stores: dict[str, BookVectorStore], engine: str
) -> None:
    hits = search_books(stores[engine], shared_local_embedder(), "wells", 5, year_to=1896)
    assert hits and all(hit.year <= 1896 for hit in hits)
    assert hits[0].title == "The Time Machine"


def scored(point_id: str, score: float) -> ScoredPoint:
    return ScoredPoint(point_id, score, {"title": point_id})


def test_a_whole_name_match_outranks_the_fusion_and_a_weak_one_changes_nothing() -> None:
    fused = [scored("guess", 1.9), scored("other", 1.2), scored("book", 0.3)]
    lift = NameMatchLift(threshold=0.5, weight=2.0)

    whole = lift_name_matches(fused, [scored("book", 1.0), scored("missed", 1.0)], 3, lift)
    weak = lift_name_matches(fused, [scored("other", 0.5), scored("missed", 0.4)], 3, lift)
    partial = lift_name_matches(fused, [scored("book", 0.75)], 3, lift)

    assert [point.id for point in whole] == ["book", "missed", "guess"]
    assert [point.score for point in whole] == pytest.approx([2.3, 2.0, 1.9])
    assert weak == fused
    assert [point.id for point in partial] == ["guess", "book", "other"]
