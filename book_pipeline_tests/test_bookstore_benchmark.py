"""bench/bookstore_benchmark.py on a tiny set made here: its one JSON object, shape and counts."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BOOKS = {
    "classics.txt": (
        "1 ::: Jane Eyre (1847) ::: Charlotte Brontë ::: An orphaned governess falls for her "
        "brooding employer, who hides a secret in the attic.\n"
        "2 ::: Dracula (1897) ::: Bram Stoker ::: A count from the Carpathians travels to England "
        "to feed on the living.\n"
    ),
    "science.txt": (
        "1 ::: On the Origin of Species (1859) ::: Charles Darwin ::: Living forms change over "
        "generations as the fittest survive and leave offspring.\n"
    ),
}
QUERIES = (
    "query\tkind\trelevant\n"
    "bronte\tauthor_surname\tJane Eyre\n"
    "stoker\tauthor_surname\tDracula\n"
    "darwn\tmisspelled\tOn the Origin of Species | The Descent of Man\n"
    "a vampire sails to england\tmeaning\tDracula\n"
)


def test_the_json_has_the_issues_shape_and_counts_each_kind(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    for name, text in BOOKS.items():
        (books / name).write_text(text, encoding="utf-8")
    queries = tmp_path / "queries.tsv"
    queries.write_text(QUERIES, encoding="utf-8")

    completed = subprocess.run(
        [sys.executable, str(PROJECT / "bench" / "bookstore_benchmark.py"), "--books",
         str(books), "--queries", str(queries), "--modes", "hybrid,keyword", "--json"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(completed.stdout)

    assert set(result) == {"books", "queries", "modes"}
    assert result["books"] == 3 and result["queries"] == 4
    assert list(result["modes"]) == ["hybrid", "keyword"]
    for found in result["modes"].values():
        assert set(found) == {"found", "by_kind"}
        assert list(found["by_kind"]) == ["author_surname", "misspelled", "meaning"]
        assert [total for _, total in found["by_kind"].values()] == [2, 1, 1]
        assert found["found"] == sum(hits for hits, _ in found["by_kind"].values())
    # Three books: every query has its book in the top 3 of any mode.
    assert result["modes"]["hybrid"]["found"] == 4


def test_a_malformed_queries_file_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    queries = tmp_path / "queries.tsv"
    queries.write_text("query\tkind\trelevant\nbronte only\n", encoding="utf-8")

    completed = subprocess.run(
        [sys.executable, str(PROJECT / "bench" / "bookstore_benchmark.py"), "--books",
         str(tmp_path / "books"), "--queries", str(queries)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert completed.returncode == 2
    assert f"{queries}:2: expected query<TAB>kind<TAB>relevant" in completed.stderr
