"""Searching the loaded sample books: the real local model, a real embedded Qdrant."""

import json
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from qdrant_client import QdrantClient, models

from book_pipeline import cli
from book_pipeline.cli import search as cli_search
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file, parse_book_text
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_DIMENSION
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.search import (
    SearchHit,
    SearchRefusedError,
    UnknownBookError,
    format_hits_table,
    hits_markdown,
    search_books,
)
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.base import SEARCH_MODES, BookVectorStore
from book_pipeline.core.store.copying import copy_collection
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.core.store.server import LOCAL_MODE_ENGINE, QdrantClientStore
from book_pipeline.definitions import defs
from book_pipeline_tests.support.data_folder import hold_store_open
from book_pipeline_tests.support.runs import SampleLoad, fetch_data_job, fetch_data_run_config

SAMPLE_BOOKS = [
    book for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt")) for book in parse_book_file(path).books
]

# Written from what a reader remembers of the book, not copied from its description.
QUERIES = [
    ("a creepy mansion with ghosts", "The Turn of the Screw"),
    ("a scientist builds a creature from dead bodies", "Frankenstein"),
    ("a portrait ages while its owner stays young", "The Picture of Dorian Gray"),
    ("a masked musician haunts the Paris opera house", "The Phantom of the Opera"),
    ("a man travels far into the future with a machine", "The Time Machine"),
    ("a submarine voyage under the oceans", "Twenty Thousand Leagues Under the Sea"),
    ("how free markets and the division of labour create wealth", "The Wealth of Nations"),
    ("evolution by natural selection", "On the Origin of Species"),
    ("a ruthless guide for rulers on keeping power", "The Prince"),
    ("a priest who solves crimes", "The Innocence of Father Brown"),
    (
        "a kingdom frozen in endless winter must repair a magic stone",
        "The Nine Winters of Harrowmere",
    ),
    ("an orphan girl learns magic from a chained dragon", "The Ember Apprentice"),
]


def search(data_dir: Path, query: str, limit: int = 3, **filters: int | str) -> list[SearchHit]:
    with open_vector_store(DEFAULT_COLLECTION, data_dir / "qdrant-edge") as store:
        return search_books(store, shared_local_embedder(), query, limit, **filters)


@pytest.fixture
def search_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The CLI reads the pipeline's variables; none of the developer's own may leak in."""
    for name in ("BOOK_PIPELINE_EMBEDDER", "BOOK_PIPELINE_EMBEDDING_MODEL", "QDRANT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_COLLECTION", DEFAULT_COLLECTION)
    return monkeypatch


@pytest.mark.parametrize(("query", "title"), QUERIES)
def test_intended_book_is_in_the_top_3(sample_load: SampleLoad, query: str, title: str) -> None:
    hits = search(sample_load.data_dir, query)

    assert title in [hit.title for hit in hits]
    assert [hit.rank for hit in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_author_filter_keeps_only_that_author(sample_load: SampleLoad) -> None:
    hits = search(sample_load.data_dir, "a ghost story", limit=10, author="H. G. Wells")

    assert {hit.title for hit in hits} == {
        book.title for book in SAMPLE_BOOKS if book.author == "H. G. Wells"
    }


def test_year_range_is_inclusive(sample_load: SampleLoad) -> None:
    hits = search(sample_load.data_dir, "a novel", limit=50, year_from=1890, year_to=1898)

    expected = {book.title for book in SAMPLE_BOOKS if 1890 <= book.year <= 1898}
    assert {hit.title for hit in hits} == expected
    assert {1890, 1898} <= {hit.year for hit in hits}


def test_filters_combine(sample_load: SampleLoad) -> None:
    hits = search(sample_load.data_dir, "love", limit=10, author="Jane Austen", year_to=1815)

    assert [hit.title for hit in hits] == ["Pride and Prejudice"]


@pytest.mark.parametrize(
    ("query", "limit", "filters", "problem"),
    [
        ("  ", 3, {}, "the query is empty"),
        ("ghosts", 0, {}, "the limit must be at least 1"),
        ("ghosts", 3, {"year_from": 1900, "year_to": 1800}, "year_from 1900 is after"),
    ],
)
def test_meaningless_searches_are_refused(
    sample_load: SampleLoad, query: str, limit: int, filters: dict, problem: str
) -> None:
    with pytest.raises(SearchRefusedError, match=problem):
        search(sample_load.data_dir, query, limit, **filters)


def test_cli_prints_a_table(
    sample_load: SampleLoad, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(sample_load.data_dir))

    assert cli.main(["search", "a creepy mansion with ghosts", "--limit", "2"]) == 0

    header, rule, first, second = capsys.readouterr().out.splitlines()
    assert header.startswith("rank  score  title") and header.endswith("source file")
    assert set(rule.replace(" ", "")) == {"-"}
    assert first.startswith("1 ") and "The Turn of the Screw" in first
    assert "gothic_horror.txt" in first
    assert second.startswith("2 ")


def test_cli_json_parses(
    sample_load: SampleLoad, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(sample_load.data_dir))

    code = cli.main(["search", "Martians invade England", "--json", "--year-from", "1890"])

    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 5
    assert results[0]["title"] == "The War of the Worlds"
    assert results[0]["author"] == "H. G. Wells"
    assert results[0]["source_file"] == "science_fiction.txt"
    assert [result["rank"] for result in results] == [1, 2, 3, 4, 5]
    assert all(result["year"] >= 1890 for result in results)
    # Hybrid scores (fused) only order the hits; a dense search's are cosine similarities.
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)


def test_cli_refuses_a_collection_of_another_model(
    tmp_path: Path, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_vector_store(DEFAULT_COLLECTION, tmp_path / "qdrant-edge") as store:
        store.ensure_collection(LOCAL_MODEL_DIMENSION, "some-other-model")
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(tmp_path))

    assert cli.main(["search", "ghosts"]) == cli.EXIT_REFUSED

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "was built with 'some-other-model'" in captured.err
    assert "the configured embedder is 'all-MiniLM-L6-v2-onnx-int8'" in captured.err


def test_cli_refuses_when_nothing_is_loaded(
    tmp_path: Path, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(tmp_path))

    assert cli.main(["search", "ghosts"]) == cli.EXIT_REFUSED
    error = capsys.readouterr().err
    assert "nothing loaded yet" in error
    # Which store and collection it looked at, and what loads them.
    assert f"collection 'books' does not exist at {tmp_path / 'qdrant-edge' / 'books'}" in error
    assert "the next fetch_data run (or the sensor's) loads the books into it" in error


def test_cli_waits_for_a_locked_store_then_fails_clearly(
    tmp_path: Path, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "qdrant-edge").mkdir()
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(tmp_path))
    holder = hold_store_open(tmp_path / "qdrant-edge", seconds=30)
    try:
        code = cli.main(["search", "ghosts", "--lock-wait", "1"])
    finally:
        holder.kill()
        holder.wait()

    assert code == cli.EXIT_REFUSED
    waiting, failure = capsys.readouterr().err.splitlines()
    assert "in use by another process; waiting up to 1 s" in waiting
    assert failure.startswith("book-pipeline search: error: ")
    assert "still in use by another process after 1 s" in failure


def test_query_data_job_attaches_a_markdown_table(sample_load: SampleLoad) -> None:
    run_config = fetch_data_run_config(SAMPLE_BOOKS_DIR, sample_load.data_dir)
    run_config["ops"] = {
        "search_loaded_books": {"config": {"query": "a vampire in a castle", "limit": 3}}
    }

    result = defs.resolve_job_def("query_data").execute_in_process(run_config=run_config)

    assert result.success
    hits = result.output_for_node("search_loaded_books")
    assert hits[0]["title"] == "Dracula"
    [output] = [event for event in result.all_events if event.is_successful_output]
    metadata = output.step_output_data.metadata
    assert metadata["query"].value == "a vampire in a castle"
    assert metadata["result_count"].value == 3
    table = metadata["results"]
    assert isinstance(table, dg.MarkdownMetadataValue)
    assert table.value.splitlines()[0].startswith("| rank | score | title |")
    assert "| Dracula | 1897 | Bram Stoker |" in table.value


def test_query_data_job_fails_clearly_when_nothing_is_loaded(tmp_path: Path) -> None:
    run_config = fetch_data_run_config(SAMPLE_BOOKS_DIR, tmp_path)
    run_config["ops"] = {"search_loaded_books": {"config": {"query": "ghosts"}}}

    result = defs.resolve_job_def("query_data").execute_in_process(
        run_config=run_config, raise_on_error=False
    )

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert "nothing loaded yet" in failure.step_failure_data.user_failure_data.description


def test_markdown_escapes_pipes_and_the_table_aligns_columns() -> None:
    hits = [
        SearchHit(1, 0.5, "Either | Or", 1843, "Søren Kierkegaard", "Choices. " * 30, "a.txt", 1),
        SearchHit(2, 0.25, "Fear", 1843, "S. K.", "Trembling.", "long_file_name.txt", 2),
    ]

    markdown = hits_markdown(hits)
    table = format_hits_table(hits)

    assert "| Either \\| Or |" in markdown
    assert len(markdown.splitlines()) == 4
    header, _, first, second = table.splitlines()
    assert first.index("Either") == second.index("Fear") == header.index("title")
    assert first.index("1843") == header.index("year")
    assert "..." in first and "Choices. " * 30 not in first


ANCIENT_BOOKS = (
    "1 ::: The Art of War (500 BC) ::: Sun Tzu ::: Thirteen chapters on strategy and deception.\n"
    "2 ::: The Republic (-375) ::: Plato ::: A dialogue on justice and the ideal city.\n"
    "3 ::: The Aeneid (19 BCE) ::: Virgil ::: A Trojan prince sails to found Rome.\n"
    "4 ::: Meditations (180 AD) ::: Marcus Aurelius ::: A Stoic emperor's private notes.\n"
    "5 ::: Beowulf (1000) ::: Anonymous ::: A hero fights a monster and its mother.\n"
)


@pytest.fixture(scope="module")
def ancient_load(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fetch_data on books written before AD 1 and after it; returns the data dir."""
    root = tmp_path_factory.mktemp("ancient")
    (root / "books").mkdir()
    (root / "books" / "ancient.txt").write_text(ANCIENT_BOOKS)
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(root / "books", root / "data")
    )
    assert result.success
    return root / "data"


@pytest.mark.parametrize(
    ("year_from", "year_to", "titles"),
    [
        (None, -100, {"The Art of War", "The Republic"}),
        (-400, -1, {"The Republic", "The Aeneid"}),
        (-19, 180, {"The Aeneid", "Meditations"}),
        (-500, -500, {"The Art of War"}),
        (1, None, {"Meditations", "Beowulf"}),
    ],
)
def test_years_before_ad_1_are_stored_negative_and_filtered_as_numbers(
    ancient_load: Path, year_from: int | None, year_to: int | None, titles: set[str]
) -> None:
    hits = search(ancient_load, "a book", limit=10, year_from=year_from, year_to=year_to)

    assert {hit.title for hit in hits} == titles
    assert all((year_from or -9999) <= hit.year <= (year_to or 9999) for hit in hits)


@pytest.mark.parametrize(
    "year_arguments",
    [["--year-to=-100"], ["--year-to", "-100"], ["--year-to", "100 BC"], ["--year-to=100 BCE"]],
)
def test_cli_year_flags_take_years_before_ad_1(
    ancient_load: Path,
    search_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    year_arguments: list[str],
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(ancient_load))

    assert cli.main(["search", "strategy in war", "--json", *year_arguments]) == cli.EXIT_OK

    results = json.loads(capsys.readouterr().out)
    assert {(result["title"], result["year"]) for result in results} == {
        ("The Art of War", -500),
        ("The Republic", -375),
    }


def test_cli_table_shows_years_before_ad_1_with_their_era(
    ancient_load: Path, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(ancient_load))

    assert cli.main(["search", "strategy in war", "--year-from", "-500", "--limit", "1"]) == 0

    header, _, first = capsys.readouterr().out.splitlines()
    assert "The Art of War" in first
    assert first[header.index("year") :].startswith("500 BC ")


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ("--year-to=0", "found '0'; there is no year 0 (1 BC is followed by AD 1: write -1 or 1)"),
        ("--year-from=500 B.C.", "found '500 B.C.'; a year is 1 to 4 digits, as 1815"),
        ("--year-to=soon", "found 'soon'; a year is 1 to 4 digits"),
    ],
)
def test_cli_refuses_what_is_not_a_year(
    capsys: pytest.CaptureFixture[str], argument: str, problem: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["search", "ghosts", argument])

    assert exit_info.value.code == cli.EXIT_REFUSED
    option = argument.split("=")[0]
    assert f"error: argument {option}: expected a year, {problem}" in capsys.readouterr().err


def test_year_range_refusal_shows_years_before_ad_1_with_their_era(ancient_load: Path) -> None:
    with pytest.raises(SearchRefusedError, match="year_from 100 BC is after year_to 200 BC"):
        search(ancient_load, "ghosts", year_from=-100, year_to=-200)


# Modes, filters and "more like this" on both engines: the Edge shard, and the server's code
# path through qdrant-client's local mode (the same API as a server: sparse vectors with IDF,
# prefetch with fusion, recommend).
ENGINES = ["qdrant-edge", "qdrant-client-local"]
MODES = ["hybrid", "keyword", "dense"]
# A second "Persuasion", so that a title can be ambiguous.
OTHER_PERSUASION = parse_book_text(
    "7 ::: Persuasion (1999) ::: Ann Other ::: A sales manual on winning customers over.\n",
    "manuals.txt",
)


@pytest.fixture(scope="module")
def engine_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BookVectorStore]]:
    """The sample books (and OTHER_PERSUASION) in both engines, embedded once."""
    embedder = shared_local_embedder()
    files = [parse_book_file(path) for path in sorted(SAMPLE_BOOKS_DIR.glob("*.txt"))]
    loads = [(parsed.books, parsed.sha256) for parsed in files] + [(OTHER_PERSUASION, "sha")]
    with ExitStack() as stack:
        stores = {
            "qdrant-edge": stack.enter_context(
                open_vector_store("books", tmp_path_factory.mktemp("modes") / "edge")
            ),
            "qdrant-client-local": QdrantClientStore(
                QdrantClient(":memory:"), "books", ":memory:", engine=LOCAL_MODE_ENGINE
            ),
        }
        for store in stores.values():
            with warnings.catch_warnings():
                # Local mode ignores payload indexes (it filters by scanning) and says so.
                warnings.filterwarnings("ignore", "Payload indexes have no effect")
                store.ensure_collection(embedder.dimension, embedder.model_name)
            for books, sha in loads:
                vectors = embedder.embed([book.embedding_text for book in books])
                store.upsert_books(books, vectors, sha)
        yield stores
        stores["qdrant-client-local"].close()


def find(
    stores: dict[str, BookVectorStore], engine: str, query: str, **options: Any
) -> list[SearchHit]:
    return search_books(stores[engine], shared_local_embedder(), query, **options)


@pytest.mark.parametrize("engine", ENGINES)
def test_both_engines_answer_every_mode(
    engine_stores: dict[str, BookVectorStore], engine: str
) -> None:
    assert engine_stores[engine].search_modes() == ("hybrid", "dense", "keyword")
    for mode in MODES:
        hits = find(engine_stores, engine, "a vampire count travels to England", limit=3, mode=mode)
        assert hits[0].title == "Dracula", mode
        assert [hit.rank for hit in hits] == [1, 2, 3]
        assert hits[0].score >= hits[1].score >= hits[2].score


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["hybrid", "keyword"])
@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("Bram Stoker", "Dracula"),
        ("books by Gaston Leroux", "The Phantom of the Opera"),
        ("Baskervilles", "The Hound of the Baskervilles"),
        ("ouroboros", "The Worm Ouroboros"),
    ],
)
def test_an_authors_name_and_a_rare_title_word_find_the_book(
    engine_stores: dict[str, BookVectorStore], engine: str, mode: str, query: str, title: str
) -> None:
    hits = find(engine_stores, engine, query, limit=3, mode=mode)

    # Keyword: first. Hybrid: in the top 3 (the measure of the author-name queries),
    # where a book close in meaning alone may come before it.
    assert title == hits[0].title if mode == "keyword" else title in [hit.title for hit in hits]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", MODES)
def test_filters_hold_in_every_mode(
    engine_stores: dict[str, BookVectorStore], engine: str, mode: str
) -> None:
    by_wells = find(engine_stores, engine, "a machine", limit=10, mode=mode, author="H. G. Wells")
    in_years = find(
        engine_stores, engine, "a novel of love", limit=50, mode=mode, year_from=1890, year_to=1898
    )

    assert by_wells and {hit.author for hit in by_wells} == {"H. G. Wells"}
    assert in_years and all(1890 <= hit.year <= 1898 for hit in in_years)
    if mode != "keyword":  # a keyword search finds only the books sharing a word with the query
        assert len(by_wells) == 3


def test_an_unknown_mode_is_refused(engine_stores: dict[str, BookVectorStore]) -> None:
    with pytest.raises(SearchRefusedError, match="unknown search mode 'fuzzy'"):
        find(engine_stores, "qdrant-edge", "ghosts", limit=3, mode="fuzzy")


@pytest.mark.parametrize("engine", ENGINES)
def test_like_finds_similar_books_and_never_the_given_ones(
    engine_stores: dict[str, BookVectorStore], engine: str
) -> None:
    like_dracula = find(engine_stores, engine, "", limit=50, like=["Dracula"])
    like_both = find(engine_stores, engine, "", limit=50, like=["Dracula", "frankenstein"])
    steered = find(engine_stores, engine, "", limit=50, like=["Dracula"], unlike=["Frankenstein"])
    by_wells = find(engine_stores, engine, "", limit=50, like=["Dracula"], author="H. G. Wells")

    # Its nearest neighbour by meaning, as a dense search of its own text finds it.
    assert like_dracula[0].title == "Frankenstein"
    assert "Dracula" not in [hit.title for hit in like_dracula]
    assert not {"Dracula", "Frankenstein"} & {hit.title for hit in like_both}
    assert not {"Dracula", "Frankenstein"} & {hit.title for hit in steered}
    # 46 books loaded: every other one comes back, ranked
    assert len(like_dracula) == 45 and len(like_both) == len(steered) == 44
    # Steering away from Frankenstein reorders the rest.
    assert [hit.title for hit in steered] != [hit.title for hit in like_dracula[1:]]
    assert {hit.title for hit in by_wells} == {
        "The Time Machine",
        "The War of the Worlds",
        "The Invisible Man",
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_like_with_a_query_text_leans_towards_it(
    engine_stores: dict[str, BookVectorStore], engine: str
) -> None:
    hits = find(
        engine_stores, engine, "a submarine voyage under the oceans", limit=3, like=["Dracula"]
    )

    assert hits[0].title == "Twenty Thousand Leagues Under the Sea"
    assert "Dracula" not in [hit.title for hit in hits]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_ambiguous_title_is_refused_listing_the_candidates(
    engine_stores: dict[str, BookVectorStore], engine: str
) -> None:
    with pytest.raises(UnknownBookError) as error:
        find(engine_stores, engine, "", limit=3, like=["Persuasion"])

    message = str(error.value)
    assert "2 loaded books are titled 'Persuasion'" in message
    assert "romance.txt:403  (Persuasion, 1817, Jane Austen)" in message
    assert "manuals.txt:7  (Persuasion, 1999, Ann Other)" in message
    assert "--like 'manuals.txt:7'" in message or "--like 'romance.txt:403'" in message
    picked = find(engine_stores, engine, "", limit=45, like=["romance.txt:403"])
    assert "Persuasion" in [hit.title for hit in picked]  # the other one
    assert ("romance.txt", 403) not in [(hit.source_file, hit.book_index) for hit in picked]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_unknown_title_is_refused_naming_the_closest(
    engine_stores: dict[str, BookVectorStore], engine: str
) -> None:
    with pytest.raises(UnknownBookError) as error:
        find(
            engine_stores,
            engine,
            "",
            limit=3,
            unlike=["Dracula"],
            like=["The Hound of Baskerville"],
        )

    message = str(error.value)
    assert "no loaded book is titled 'The Hound of Baskerville'" in message
    assert "the closest titles: 'The Hound of the Baskervilles'" in message
    assert "FILE:INDEX" in message


def test_like_refuses_the_keyword_mode_and_unlike_alone(
    engine_stores: dict[str, BookVectorStore],
) -> None:
    with pytest.raises(SearchRefusedError, match="it has no keyword mode"):
        find(engine_stores, "qdrant-edge", "", limit=3, like=["Dracula"], mode="keyword")
    with pytest.raises(SearchRefusedError, match="give a book to be like too"):
        find(engine_stores, "qdrant-edge", "ghosts", limit=3, unlike=["Dracula"])
    with pytest.raises(UnknownBookError, match="is empty: give its title or FILE:INDEX"):
        find(engine_stores, "qdrant-edge", "", limit=3, like=["  "])
    [hit] = find(engine_stores, "qdrant-edge", "", limit=1, like=[" Dracula "])
    assert hit.title == "Frankenstein"


def test_cli_modes_and_like(
    sample_load: SampleLoad, search_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    search_env.setenv("BOOK_PIPELINE_DATA_DIR", str(sample_load.data_dir))

    assert cli.main(["search", "Stoker", "--mode", "keyword", "--json", "--limit", "1"]) == 0
    [by_word] = json.loads(capsys.readouterr().out)
    assert cli.main(["search", "--like", "Dracula", "--unlike", "The Time Machine", "--json"]) == 0
    liked = json.loads(capsys.readouterr().out)
    assert cli.main(["search", "--like", "Draculaa"]) == cli.EXIT_REFUSED
    unknown = capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["search", "ghosts", "--mode", "fuzzy"])
    mode_error = capsys.readouterr().err

    assert by_word["title"] == "Dracula"
    assert len(liked) == 5
    assert not {"Dracula", "The Time Machine"} & {hit["title"] for hit in liked}
    assert "no loaded book is titled 'Draculaa'" in unknown and "FILE:INDEX" in unknown
    assert exit_info.value.code == cli.EXIT_REFUSED
    assert "argument --mode: invalid choice: 'fuzzy'" in mode_error


def test_cli_and_store_agree_on_the_modes() -> None:
    assert cli_search.SEARCH_MODES == SEARCH_MODES


def test_query_data_job_takes_a_mode_and_like(sample_load: SampleLoad) -> None:
    run_config = fetch_data_run_config(SAMPLE_BOOKS_DIR, sample_load.data_dir)
    ops = run_config["ops"] = {"search_loaded_books": {"config": {"query": "Leroux", "limit": 1}}}
    ops["search_loaded_books"]["config"]["mode"] = "keyword"
    by_word = defs.resolve_job_def("query_data").execute_in_process(run_config=run_config)
    ops["search_loaded_books"]["config"] = {"like": ["Persuasion"], "limit": 2}
    liked = defs.resolve_job_def("query_data").execute_in_process(run_config=run_config)
    ops["search_loaded_books"]["config"] = {"query": "ghosts", "mode": "fuzzy"}
    refused = defs.resolve_job_def("query_data").execute_in_process(
        run_config=run_config, raise_on_error=False
    )

    assert by_word.output_for_node("search_loaded_books")[0]["title"] == "The Phantom of the Opera"
    assert "Persuasion" not in [
        hit["title"] for hit in liked.output_for_node("search_loaded_books")
    ]
    [failure] = [event for event in refused.all_events if event.is_step_failure]
    assert "unknown search mode 'fuzzy'" in failure.step_failure_data.user_failure_data.description


def test_a_server_collection_of_an_earlier_release_answers_dense_and_takes_loads() -> None:
    """Qdrant cannot add a sparse vector to an existing collection: a dense-only one keeps
    answering dense searches, and loads write their dense vectors only."""
    embedder = shared_local_embedder()
    client = QdrantClient(":memory:")
    client.create_collection(
        "books",
        vectors_config=models.VectorParams(
            size=embedder.dimension, distance=models.Distance.COSINE
        ),
        metadata={"embedding_model": embedder.model_name, "dimension": embedder.dimension},
    )
    store = QdrantClientStore(client, "books", ":memory:", engine=LOCAL_MODE_ENGINE)
    books = parse_book_file(SAMPLE_BOOKS_DIR / "gothic_horror.txt").books
    store.upsert_books(books, embedder.embed([book.embedding_text for book in books]), "sha")

    hits = search_books(store, embedder, "a vampire count", 1)
    with pytest.raises(SearchRefusedError, match="holds no keyword vectors yet") as refused:
        search_books(store, embedder, "Stoker", 1, mode="hybrid")

    # The way out it names: a copy into a new collection, keyword vectors made from payloads.
    copy = QdrantClientStore(client, "books_v2", ":memory:", engine=LOCAL_MODE_ENGINE)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect")
        copied = copy_collection(store, copy)
    by_author = search_books(copy, embedder, "Stoker", 1, mode="keyword")

    assert store.search_modes() == ("dense",)
    assert store.count() == len(books) and hits[0].title == "Dracula"
    assert "answers the dense mode only, not 'hybrid'" in str(refused.value)
    assert "migrate-store --to-url URL --to-collection NEW" in str(refused.value)
    assert copied == len(books) and copy.search_modes() == ("hybrid", "dense", "keyword")
    assert by_author[0].title == "Dracula"
    store.close()
