"""Searching the loaded sample books: the real local model, a real embedded Qdrant."""

import json
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline import cli
from book_pipeline.core.embedding import LOCAL_MODEL_DIMENSION, shared_local_embedder
from book_pipeline.core.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.parsing import parse_book_file
from book_pipeline.core.search import (
    SearchHit,
    SearchRefusedError,
    format_hits_table,
    hits_markdown,
    search_books,
)
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.vector_store import open_vector_store
from book_pipeline.definitions import defs
from book_pipeline_tests.conftest import (
    SampleLoad,
    fetch_data_job,
    fetch_data_run_config,
    hold_store_open,
)

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
    assert all(0 < result["score"] <= 1 for result in results)


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
    assert "nothing loaded yet" in capsys.readouterr().err


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
