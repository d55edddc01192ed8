"""`book-pipeline add-books`: only files the pipeline accepts ever appear in the folder."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from book_pipeline import cli
from book_pipeline.cli import add_books
from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import format_book_line, parse_book_file
from book_pipeline.core.settings import VARIABLES

LINE_A = format_book_line(1, "The Glass Orchard", 1921, "Ada Brennan", "A greenhouse of secrets.")
LINE_B = format_book_line(
    2, "Salt and Iron", 1899, "Owen Tally", "Smugglers on a winter coast: cold."
)
BAD_LINE = "3 ::: Missing Year ::: Nobody ::: No year in the title."


def stdin_of(data: bytes) -> io.TextIOWrapper:
    """A pipe-like stdin: text on top, the bytes under `.buffer`, not a terminal."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")


def test_writes_lines_from_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["add-books", "new_books", LINE_A, LINE_B, "--books-dir", str(tmp_path)])

    written = tmp_path / "new_books.txt"
    assert code == 0
    assert written.read_text(encoding="utf-8") == f"{LINE_A}\n{LINE_B}\n"
    assert [book.title for book in parse_book_file(written).books] == [
        "The Glass Orchard",
        "Salt and Iron",
    ]
    out = capsys.readouterr().out
    assert out == f"wrote 2 books to {written}\n"


def test_reads_stdin_when_no_lines_given_and_skips_blank_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", stdin_of(f"\n{LINE_A}\r\n   \n{LINE_B}\n\n".encode()))

    code = cli.main(["add-books", "from_stdin.txt", "--books-dir", str(tmp_path)])

    assert code == 0
    assert (tmp_path / "from_stdin.txt").read_bytes() == f"{LINE_A}\n{LINE_B}\n".encode()
    assert "wrote 2 books" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (f"{LINE_A}\n\n3 ::: Caf\xe9 (1900) ::: X ::: Y.\n".encode("latin-1"), "not valid UTF-8"),
        (f"{LINE_A}\n3 ::: Nul (1900) ::: X ::: Y\0.\n".encode(), "binary content"),
    ],
)
def test_stdin_bytes_the_pipeline_would_reject_are_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: bytes,
    problem: str,
) -> None:
    """A NUL byte parses as text but makes the pipeline reject the whole file as binary."""
    monkeypatch.setattr(sys, "stdin", stdin_of(data))

    assert cli.main(["add-books", "raw", "--books-dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "raw.txt, line 2" in err
    assert problem in err


def test_unicode_is_written_as_utf8(tmp_path: Path) -> None:
    line = format_book_line(7, "Élan", 1950, "Zoë Ørsted", "Café au lait — naïve.")

    assert cli.main(["add-books", "accents", line, "--books-dir", str(tmp_path)]) == 0
    assert (tmp_path / "accents.txt").read_bytes() == f"{line}\n".encode()


def test_books_dir_defaults_to_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLES.books_dir.name, str(tmp_path))

    assert cli.main(["add-books", "via_env", LINE_A]) == 0
    assert (tmp_path / "via_env.txt").is_file()


def test_bad_line_writes_nothing_and_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["add-books", "broken", LINE_A, BAD_LINE, "--books-dir", str(tmp_path)])

    assert code == 2
    assert list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "broken.txt, line 2" in err
    assert "expected '<Title> (<Year>)'" in err


def test_a_file_the_pipeline_would_refuse_for_its_size_is_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOK_PIPELINE_MAX_FILE_MB", "1")
    long_book = "1 ::: Long (2000) ::: A ::: " + "word " * 3000
    lines = [long_book.replace("1", str(index), 1) for index in range(1, 80)]

    code = cli.main(["add-books", "huge", *lines, "--books-dir", str(tmp_path)])

    assert code == 2
    assert list(tmp_path.iterdir()) == []
    assert "over the limit of 1 MiB (BOOK_PIPELINE_MAX_FILE_MB)" in capsys.readouterr().err


def test_duplicate_index_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["add-books", "dupes", LINE_A, LINE_A, "--books-dir", str(tmp_path)])

    assert code == 2
    assert list(tmp_path.iterdir()) == []
    assert "index 1 is already used on line 1" in capsys.readouterr().err


def test_empty_stdin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", stdin_of(b"\n  \n"))

    assert cli.main(["add-books", "empty", "--books-dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []
    assert "no book lines" in capsys.readouterr().err


def test_existing_file_is_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "shelf.txt"
    existing.write_text(f"{LINE_A}\n", encoding="utf-8")

    code = cli.main(["add-books", "shelf", LINE_B, "--books-dir", str(tmp_path)])

    assert code == 2
    assert existing.read_text(encoding="utf-8") == f"{LINE_A}\n"
    assert "already exists" in capsys.readouterr().err

    assert (
        cli.main(["add-books", "shelf", LINE_B, "--books-dir", str(tmp_path), "--overwrite"]) == 0
    )
    assert existing.read_text(encoding="utf-8") == f"{LINE_B}\n"


@pytest.mark.parametrize(
    "name",
    ["sub/books", "../escape", "..\\escape", "/tmp/abs", ".hidden", ".txt", "", "x\0y"],
)
def test_bad_names_are_refused(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()

    assert cli.main(["add-books", name, LINE_A, "--books-dir", str(tmp_path)]) == 2
    assert list(tmp_path.rglob("*.txt")) == []
    assert list(tmp_path.parent.glob("escape*")) == []
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["draft.part", "draft~"])
def test_names_that_only_look_temporary_get_the_suffix(tmp_path: Path, name: str) -> None:
    """`draft.part` becomes `draft.part.txt`, which the watcher does pick up."""
    assert cli.main(["add-books", name, LINE_A, "--books-dir", str(tmp_path)]) == 0
    assert [path.name for path in list_book_files(tmp_path)] == [f"{name}.txt"]


def test_missing_books_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"

    assert cli.main(["add-books", "x", LINE_A, "--books-dir", str(missing)]) == 2
    assert not missing.exists()
    assert "books folder does not exist" in capsys.readouterr().err


def test_successful_write_leaves_no_part_file(tmp_path: Path) -> None:
    assert cli.main(["add-books", "clean", LINE_A, "--books-dir", str(tmp_path)]) == 0

    assert [path.name for path in tmp_path.iterdir()] == ["clean.txt"]
    assert (tmp_path / "clean.txt").stat().st_mode & 0o777 == add_books.BOOK_FILE_MODE


def test_failed_write_leaves_neither_part_nor_final_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_before_replace: list[str] = []

    def failing_replace(source: Path, target: Path) -> None:
        seen_before_replace.extend(path.name for path in tmp_path.iterdir())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)

    assert cli.main(["add-books", "full_disk", LINE_A, "--books-dir", str(tmp_path)]) == 1
    assert len(seen_before_replace) == 1
    assert seen_before_replace[0].endswith(".part")
    assert list_book_files(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    assert "No space left on device" in capsys.readouterr().err


def test_missing_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def run_installed_command(
    arguments: list[str], environment: dict[str, str], **options: Any
) -> subprocess.CompletedProcess[str]:
    """The `book-pipeline` console script the install put beside this Python."""
    script = Path(sys.executable).with_name("book-pipeline")
    return subprocess.run(
        [str(script), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=60,
        **options,
    )


def test_installed_console_script(tmp_path: Path) -> None:
    environment = {**os.environ, VARIABLES.books_dir.name: str(tmp_path)}

    result = run_installed_command(
        ["add-books", "piped"], environment, input=f"{LINE_A}\n{LINE_B}\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote 2 books to {tmp_path.resolve() / 'piped.txt'}\n"
    assert len(parse_book_file(tmp_path / "piped.txt").books) == 2


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with no books folder configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(VARIABLES.books_dir.name, raising=False)
    monkeypatch.setenv("BOOK_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path.resolve()


def package_samples() -> list[tuple[str, int, int]]:
    return sorted(
        (path.name, path.stat().st_size, path.stat().st_mtime_ns)
        for path in SAMPLE_BOOKS_DIR.iterdir()
    )


def git_status() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.mark.xdist_group("project_checkout")
def test_add_books_with_no_settings_leaves_the_package_and_the_git_tree_untouched(
    tmp_path: Path,
) -> None:
    """The installed command, as a user runs it: the file lands in ./books, not the package."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in (VARIABLES.books_dir.name, "BOOK_PIPELINE_DATA_DIR")
    }
    git_before, samples_before = git_status(), package_samples()

    result = run_installed_command(["add-books", "new_arrivals", LINE_A], environment, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    books = tmp_path.resolve() / "books"
    assert result.stdout.splitlines() == [
        f"created the books folder {books} with copies of the 6 bundled sample files; the "
        "pipeline reads it from now on instead of the samples in the package (sample books "
        "already loaded stay loaded; delete a copy to remove its books)",
        f"wrote 1 book to {books / 'new_arrivals.txt'}",
    ]
    assert (git_status(), package_samples()) == (git_before, samples_before)
    assert sorted(path.name for path in books.iterdir()) == sorted(
        [name for name, _, _ in samples_before] + ["new_arrivals.txt"]
    )


def test_add_books_does_not_import_dagster(tmp_path: Path) -> None:
    """Dagster's import takes seconds; and the CLI is to stay usable without it."""
    program = (
        "import sys; from book_pipeline.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'dagster'))"
    )

    result = subprocess.run(
        [sys.executable, "-c", program, "add-books", "x", LINE_A, "--books-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert result.stdout.splitlines()[-1] == "[]"


def test_the_books_folder_is_created_once(
    working_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["add-books", "first", LINE_A]) == cli.EXIT_OK
    assert "created the books folder" in capsys.readouterr().out

    assert cli.main(["add-books", "second", LINE_B]) == cli.EXIT_OK

    assert capsys.readouterr().out == f"wrote 1 book to {working_dir / 'books' / 'second.txt'}\n"
    assert {"first.txt", "second.txt"} <= {path.name for path in (working_dir / "books").iterdir()}


def test_a_refused_line_creates_no_books_folder(
    working_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["add-books", "broken", BAD_LINE]) == cli.EXIT_REFUSED

    assert "broken.txt, line 1" in capsys.readouterr().err
    assert list(working_dir.iterdir()) == []


def test_a_sample_name_replaces_only_the_users_copy(
    working_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples_before = package_samples()

    assert cli.main(["add-books", "romance", LINE_A]) == cli.EXIT_REFUSED
    assert "books/romance.txt already exists; pass --overwrite" in capsys.readouterr().err
    assert not (working_dir / "books").exists()

    assert cli.main(["add-books", "romance", LINE_A, "--overwrite"]) == cli.EXIT_OK

    assert (working_dir / "books" / "romance.txt").read_text() == LINE_A + "\n"
    assert package_samples() == samples_before


def test_a_file_named_books_is_refused(
    working_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (working_dir / "books").write_text("not a folder")

    assert cli.main(["add-books", "x", LINE_A]) == cli.EXIT_REFUSED

    assert f"{working_dir / 'books'} is not a folder" in capsys.readouterr().err


def test_status_says_when_it_reads_the_bundled_samples(
    working_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(
        f"books folder: {SAMPLE_BOOKS_DIR} (the bundled samples, read while "
        f"{working_dir / 'books'} does not exist; book-pipeline add-books creates it)\n"
    )

    (working_dir / "books").mkdir()

    assert cli.main(["status"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(f"books folder: {working_dir / 'books'}\n")
