"""The bad input catalogue (docs/bad_input.md): every kind of bad input, and what happens to it.

Parser-level rows call the parsing functions. Pipeline-level rows share two real fetch_data runs
(`catalogue`) over a folder that holds one file per row, and check each file's step, error,
ledger entry and points. The first run fails each refused file's own refusal step and loads the
accepted files; the second run skips the refused files, which have not changed, and has nothing
left to load.
"""

import os
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from book_pipeline.core.books.files import (
    BYTES_PER_MB,
    DEFAULT_MAX_FILE_MB,
    UNREAD_SHA256,
    BookFileError,
    file_sha256,
    mapping_key_for,
    read_book_file,
    snapshot_book_files,
)
from book_pipeline.core.books.parsing import (
    MAX_INDEX,
    MAX_LINE_CHARS,
    parse_book_bytes,
    parse_book_file,
    parse_book_text,
)
from book_pipeline.core.ingest.ledger import FileState, LedgerEntry
from book_pipeline.defs.resources import resources_from_environment
from book_pipeline_tests.support.data_folder import qdrant_in, recorded_entries
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config, steps_that_ran

# Its tests share a module-scoped fixture: one worker runs them all, and the set-up once
# (book_pipeline_tests/conftest.py).
pytestmark = pytest.mark.xdist_group(__name__)

EMMA = "1 ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs."
PERSUASION = "2 ::: Persuasion (1817) ::: Jane Austen ::: Second chances, eight years on."
SECRET = "1 ::: The Secret Ledger (2001) ::: Nobody ::: Must never be read by the pipeline."
HUGE_FILE_BYTES = 100 * BYTES_PER_MB
LONG_LINE = "2 ::: Long (2000) ::: A ::: " + "x" * MAX_LINE_CHARS


@dataclass(frozen=True)
class Refusal:
    row: str
    file_name: str
    content: bytes
    line: int | None
    problem: str  # the start of the problem the error states

    @property
    def message(self) -> str:
        where = f"{self.file_name}, line {self.line}" if self.line else self.file_name
        return f"{where}: {self.problem}"


def _lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


PARSE_REFUSALS = [
    Refusal(
        "non-UTF-8",
        "latin1.txt",
        _lines(EMMA) + "2 ::: Café (2001) ::: Someone ::: Text\n".encode("latin-1"),
        2,
        "not valid UTF-8 (byte 0xe9 at offset ",
    ),
    Refusal("binary", "cover.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 3, "binary content"),
    Refusal("empty file", "empty.txt", b"", None, "the file contains no book lines"),
    Refusal("only blank lines", "blank.txt", b"\n   \r\n\t\n", None, "the file contains no book"),
    Refusal(
        "missing field",
        "missing field.txt",
        _lines(EMMA, "2 ::: Persuasion (1817) ::: Jane Austen"),
        2,
        "expected 4 fields separated by ':::' "
        "(<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>), found 3",
    ),
    Refusal(
        "extra field",
        "extra field.txt",
        _lines(EMMA + " ::: an extra field"),
        1,
        "expected 4 fields separated by ':::' ",
    ),
    Refusal(
        "another field order (author first)",
        "author first.txt",
        _lines("Jane Austen ::: Emma (1815) ::: 1 ::: A matchmaker errs."),
        1,
        "expected a whole number as the index (first field), found 'Jane Austen'; "
        "the fields look out of order, expected "
        "<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>",
    ),
    Refusal(
        "another field order (author second)",
        "author second.txt",
        _lines("1 ::: Jane Austen ::: Emma (1815) ::: A matchmaker errs."),
        1,
        "expected '<Title> (<Year>)' (second field), found 'Jane Austen'; "
        "the fields look out of order",
    ),
    Refusal(
        "no year",
        "no year.txt",
        _lines("1 ::: Emma ::: Jane Austen ::: A matchmaker errs."),
        1,
        "expected '<Title> (<Year>)' (second field), found 'Emma'",
    ),
    Refusal(
        "year of five digits",
        "year 18150.txt",
        _lines("1 ::: Emma (18150) ::: Jane Austen ::: A matchmaker errs."),
        1,
        "expected '<Title> (<Year>)' (second field), found 'Emma (18150)'; a year is 1 to 4 "
        "digits, as 1815, 1066 AD or 1066 CE, and before AD 1 as -500, 500 BC or 500 BCE",
    ),
    Refusal(
        "era not as the format writes it",
        "art of war bc.txt",
        _lines("8 ::: The Art of War (500 B.C.) ::: Sun Tzu ::: Win without fighting."),
        1,
        "expected '<Title> (<Year>)' (second field), found 'The Art of War (500 B.C.)'; "
        "a year is 1 to 4 digits",
    ),
    Refusal(
        "year 0",
        "year zero.txt",
        _lines(EMMA, "2 ::: Nothing (0) ::: Nobody ::: Never written."),
        2,
        "expected a year in '<Title> (<Year>)' (second field), found 'Nothing (0)'; "
        "there is no year 0 (1 BC is followed by AD 1: write -1 or 1)",
    ),
    Refusal(
        "negative index",
        "negative index.txt",
        _lines("-1 ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs."),
        1,
        "expected a whole number as the index (first field), found '-1'",
    ),
    Refusal(
        "index over 64 bits",
        "huge index.txt",
        _lines(f"{MAX_INDEX + 1} ::: Emma (1815) ::: Jane Austen ::: A matchmaker errs."),
        1,
        f"index {MAX_INDEX + 1} is too large: the largest index is {MAX_INDEX:,}",
    ),
    Refusal(
        "duplicate index",
        "duplicate index.txt",
        _lines(EMMA, "", PERSUASION.replace("2 :::", "1 :::")),
        3,
        "index 1 is already used on line 1",
    ),
    Refusal(
        "empty author",
        "no author.txt",
        _lines("1 ::: Emma (1815) :::   ::: A matchmaker errs."),
        1,
        "the author is empty",
    ),
    Refusal(
        "empty description",
        "no description.txt",
        _lines("1 ::: Emma (1815) ::: Jane Austen ::: "),
        1,
        "the description is empty",
    ),
    Refusal(
        "very long line",
        "long line.txt",
        _lines(EMMA, LONG_LINE),
        2,
        f"line is {len(LONG_LINE):,} characters long, the limit is {MAX_LINE_CHARS:,}",
    ),
]

# Refused from the file system, before a byte is parsed: only a run shows them.
FILE_REFUSALS = [
    Refusal(
        "100 MB file",
        "huge.txt",
        b"",  # a sparse file, see `write_catalogue`
        None,
        f"the file is {HUGE_FILE_BYTES:,} bytes (100.0 MiB), over the limit of "
        f"{DEFAULT_MAX_FILE_MB} MiB (BOOK_PIPELINE_MAX_FILE_MB): refused before parsing",
    ),
    Refusal(
        "symlink outside the books folder",
        "outside link.txt",
        b"",
        None,
        "symlink points outside the books folder (to ",
    ),
    Refusal(
        "dangling symlink",
        "dangling link.txt",
        b"",
        None,
        "symlink to gone.txt cannot be read: No such file or directory",
    ),
]

# Loaded: file name -> the titles its points carry.
ACCEPTED = {
    "good.txt": ["Emma", "Persuasion"],
    "bom crlf.txt": ["Emma", "Persuasion"],
    # The same books (same index, title and author) in two files: two listings, four points.
    "duplicate a.txt": ["Emma", "Persuasion"],
    "duplicate b.txt": ["Emma", "Persuasion"],
    "with  two spaces.txt": ["Emma"],
    "späte Lieferung — 書籍 📚.txt": ["Emma"],
    # A symlink to a file inside the folder: loaded under the link's name.
    "inside link.txt": ["Sense and Sensibility"],
}

IGNORED = [
    ".hidden.txt",
    ".~lock.good.txt#",
    "upload.txt.part",
    "good.txt~",
    "scratch.txt.tmp",
    "notes.md",
    "README",
]


def write_catalogue(root: Path) -> tuple[Path, Path]:
    books = root / "books"
    books.mkdir()
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    for refusal in PARSE_REFUSALS:
        (books / refusal.file_name).write_bytes(refusal.content)
    with (books / "huge.txt").open("wb") as huge:
        huge.truncate(HUGE_FILE_BYTES)  # sparse: 100 MiB long, nothing written to disk
    (books / "outside link.txt").symlink_to("../outside/secret.txt")
    (books / "dangling link.txt").symlink_to("gone.txt")
    for name in ("good.txt", "duplicate a.txt", "duplicate b.txt"):
        (books / name).write_bytes(_lines(EMMA, PERSUASION))
    (books / "bom crlf.txt").write_bytes(("\ufeff" + EMMA + "\r\n\r\n" + PERSUASION).encode())
    for name in ("with  two spaces.txt", "späte Lieferung — 書籍 📚.txt"):
        (books / name).write_bytes(_lines(EMMA))
    # Subfolders are not scanned: archive/ is reached only through the link.
    (books / "archive").mkdir()
    (books / "archive" / "1811.txt").write_bytes(
        _lines("1 ::: Sense and Sensibility (1811) ::: Jane Austen ::: Two sisters.")
    )
    (books / "inside link.txt").symlink_to("archive/1811.txt")
    for name in IGNORED:
        (books / name).write_bytes(_lines(EMMA))
    (books / "a folder.txt").mkdir()
    return books, outside


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under root, as lstat and content see it (links are not followed)."""
    state: dict[str, tuple] = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder, name)
            status = path.lstat()
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path), status.st_mtime_ns)
            elif path.is_file():
                content = path.read_bytes() if status.st_size < BYTES_PER_MB else None
                state[str(path)] = ("file", status.st_size, status.st_mtime_ns, content)
            else:
                state[str(path)] = ("dir",)
    return state


@dataclass(frozen=True)
class CatalogueRun:
    books: Path
    data_dir: Path
    instance: dg.DagsterInstance
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult
    before: dict[str, tuple]
    after: dict[str, tuple]

    def failure_message(self, file_name: str) -> str:
        step_key = f"book_embeddings.refuse_book_description_file[{mapping_key_for(file_name)}]"
        [failure] = [
            event
            for event in self.first.all_events
            if event.is_step_failure and event.step_key == step_key
        ]
        return failure.step_failure_data.user_failure_data.description

    def ledger(self) -> dict[str, LedgerEntry]:
        return recorded_entries(self.data_dir)

    def titles_by_file(self) -> dict[str, list[str]]:
        with qdrant_in(self.data_dir).open() as store:
            points, _ = store.scroll(1000)
        titles: dict[str, list[str]] = {}
        for point in sorted(points, key=lambda point: point.payload["book_index"]):
            titles.setdefault(point.payload["source_file"], []).append(point.payload["title"])
        return titles


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CatalogueRun]:
    root = tmp_path_factory.mktemp("catalogue")
    books, _ = write_catalogue(root)
    data_dir = root / "data"
    run_config = fetch_data_run_config(books, data_dir)
    before = tree_state(root)
    with dg.instance_for_test() as instance:
        runs = [
            fetch_data_job().execute_in_process(
                run_config=run_config, instance=instance, raise_on_error=False
            )
            for _ in range(2)
        ]
        after = tree_state(root)
        yield CatalogueRun(books, data_dir, instance, *runs, before, after)


def refused_in_a_run(catalogue: CatalogueRun, refusal: Refusal) -> None:
    """Its own step failed naming file, line and problem; the ledger says so; nothing loaded."""
    message = catalogue.failure_message(refusal.file_name)
    assert message.startswith(refusal.message), message
    entry = catalogue.ledger()[refusal.file_name]
    assert (entry.state, entry.error, entry.error_line) == (FileState.FAILED, message, refusal.line)
    assert refusal.file_name not in catalogue.titles_by_file()


@pytest.mark.parametrize("refusal", PARSE_REFUSALS, ids=lambda refusal: refusal.row)
def test_parser_refuses_naming_file_line_and_problem(refusal: Refusal) -> None:
    with pytest.raises(BookFileError) as caught:
        parse_book_bytes(refusal.content, refusal.file_name)
    assert str(caught.value).startswith(refusal.message), str(caught.value)
    assert (caught.value.file_name, caught.value.line_number) == (refusal.file_name, refusal.line)


@pytest.mark.parametrize("refusal", PARSE_REFUSALS + FILE_REFUSALS, ids=lambda r: r.row)
def test_run_fails_only_that_files_step_and_records_it(
    catalogue: CatalogueRun, refusal: Refusal
) -> None:
    refused_in_a_run(catalogue, refusal)


def test_first_run_fails_exactly_the_refused_files_steps(catalogue: CatalogueRun) -> None:
    """Every accepted file is parsed, embedded and loaded; each refused file fails its own step."""
    assert not catalogue.first.success
    steps = steps_that_ran(catalogue.instance, catalogue.first.run_id)
    refused = {refusal.file_name for refusal in PARSE_REFUSALS + FILE_REFUSALS}
    assert steps["failure"] == {
        f"refuse_book_description_file[{mapping_key_for(name)}]" for name in refused
    }
    assert steps["skipped"] == {
        f"create_vector_embeddings[{mapping_key_for(name)}]" for name in refused
    }
    for name in ACCEPTED:
        assert f"create_vector_embeddings[{mapping_key_for(name)}]" in steps["success"]
    assert "load_embeddings_to_vector_db" in steps["success"]
    summary = catalogue.first.output_for_node("book_embeddings")
    assert summary["files_processed"] == len(ACCEPTED)
    assert summary["failed_files_skipped"] == len(refused)


def test_next_run_skips_the_refused_files_and_loads_the_others(catalogue: CatalogueRun) -> None:
    """Refused files stay failed, and are not retried, until they change; the accepted files
    were loaded by the first run, so the second has nothing to map."""
    assert catalogue.second.success
    steps = steps_that_ran(catalogue.instance, catalogue.second.run_id)
    assert steps["failure"] == set()
    assert steps["success"] == {
        "list_book_description_files",
        "list_refused_book_files",
        "list_over_budget_book_files",
        "load_embeddings_to_vector_db",
        "switch_to_rebuilt_version",
        "check_every_file_accepted",
        "check_removals_confirmed",
    }
    summary = catalogue.second.output_for_node("book_embeddings")
    assert summary["files_processed"] == 0
    assert summary["failed_files_skipped"] == len(PARSE_REFUSALS + FILE_REFUSALS)
    assert catalogue.titles_by_file() == ACCEPTED
    loaded = {name for name, entry in catalogue.ledger().items() if entry.state is FileState.LOADED}
    assert loaded == set(ACCEPTED)
    # Refused unread, so recorded without a content hash: the outside target was not hashed.
    ledger = catalogue.ledger()
    assert ledger["huge.txt"].sha256 == ledger["outside link.txt"].sha256 == UNREAD_SHA256


def test_duplicate_books_across_files_are_both_loaded(catalogue: CatalogueRun) -> None:
    """Identity is file + index: each file is its own listing, so nothing is merged or dropped."""
    titles = catalogue.titles_by_file()
    assert titles["duplicate a.txt"] == titles["duplicate b.txt"] == ["Emma", "Persuasion"]
    with qdrant_in(catalogue.data_dir).open() as store:
        points, _ = store.scroll(1000)
    emma_ids = {
        point.id
        for point in points
        if point.payload["title"] == "Emma" and point.payload["book_index"] == 1
    }
    assert len(emma_ids) == sum(titles.count("Emma") for titles in ACCEPTED.values())


def test_names_with_spaces_and_unicode_are_loaded(catalogue: CatalogueRun) -> None:
    steps = steps_that_ran(catalogue.instance, catalogue.first.run_id)["success"]
    for name in ("with  two spaces.txt", "späte Lieferung — 書籍 📚.txt"):
        key = mapping_key_for(name)
        assert f"transform_book_description_file[{key}]" in steps
        assert catalogue.titles_by_file()[name] == ["Emma"]
    assert mapping_key_for("späte Lieferung — 書籍 📚.txt").startswith("sp_te_Lieferung_")


def test_symlink_inside_the_folder_is_loaded_under_its_own_name(catalogue: CatalogueRun) -> None:
    titles = catalogue.titles_by_file()
    assert titles["inside link.txt"] == ["Sense and Sensibility"]
    assert "1811.txt" not in titles  # subfolders are not scanned


def test_hidden_temporary_and_other_files_are_ignored(catalogue: CatalogueRun) -> None:
    listed = {snapshot.name for snapshot in snapshot_book_files(catalogue.books)}
    assert listed.isdisjoint([*IGNORED, "a folder.txt", "archive"])
    assert listed == {r.file_name for r in PARSE_REFUSALS + FILE_REFUSALS} | set(ACCEPTED)
    assert set(catalogue.ledger()).isdisjoint(IGNORED)


def test_input_files_are_never_modified(catalogue: CatalogueRun) -> None:
    """Not one file, link or folder in the books folder (or outside it) changed."""
    changed = {
        path
        for path in catalogue.before.keys() | catalogue.after.keys()
        if catalogue.before.get(path) != catalogue.after.get(path)
    }
    assert changed and all(Path(path).is_relative_to(catalogue.data_dir) for path in changed)


def test_oversized_file_is_refused_from_its_stat_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as file:
        file.truncate(HUGE_FILE_BYTES)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(BookFileError, match=r"huge\.txt: the file is 104,857,600 bytes"):
            read_book_file(huge, tmp_path, max_bytes=DEFAULT_MAX_FILE_MB * BYTES_PER_MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BYTES_PER_MB
    assert time.perf_counter() - started < 1


def test_size_limit_boundary_and_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at_limit = tmp_path / "at limit.txt"
    at_limit.write_bytes(_lines(EMMA).ljust(BYTES_PER_MB, b"\n"))
    _, data = read_book_file(at_limit, tmp_path, max_bytes=BYTES_PER_MB)
    assert len(parse_book_bytes(data, at_limit.name)) == 1
    with at_limit.open("ab") as file:
        file.write(b"\n")
    with pytest.raises(BookFileError, match=r"over the limit of 1 MiB"):
        read_book_file(at_limit, tmp_path, max_bytes=BYTES_PER_MB)

    monkeypatch.setenv("BOOK_PIPELINE_MAX_FILE_MB", "7")
    books_folder = resources_from_environment()["books_folder"].process_config_and_initialize()
    assert books_folder.max_file_bytes == 7 * BYTES_PER_MB


def test_symlinks_are_listed_by_where_they_lead(tmp_path: Path) -> None:
    """Inside: the target's stat. Outside or dangling: the link's own stat, target untouched."""
    books, _ = write_catalogue(tmp_path)
    snapshots = {snapshot.name: snapshot for snapshot in snapshot_book_files(books)}
    target = (books / "archive" / "1811.txt").stat()
    assert (snapshots["inside link.txt"].size, snapshots["inside link.txt"].mtime_ns) == (
        target.st_size,
        target.st_mtime_ns,
    )
    for name in ("outside link.txt", "dangling link.txt"):
        link = (books / name).lstat()
        assert (snapshots[name].size, snapshots[name].mtime_ns) == (link.st_size, link.st_mtime_ns)
    assert file_sha256(books / "outside link.txt", books_folder=books) == UNREAD_SHA256
    (books / "folder link.txt").symlink_to("archive")
    (books / "loop.txt").symlink_to("loop.txt")
    listed = {snapshot.name for snapshot in snapshot_book_files(books)}
    assert "folder link.txt" not in listed and "loop.txt" in listed
    with pytest.raises(BookFileError, match=r"loop\.txt: symlink to loop\.txt cannot be read"):
        read_book_file(books / "loop.txt", books)
    with pytest.raises(BookFileError, match=r"symlink points outside the books folder"):
        read_book_file(books / "outside link.txt", books)


def test_accepted_variations_parse(tmp_path: Path) -> None:
    """Leading zeros, years of 1 to 4 digits, years before AD 1, the largest index, one book
    twice in a file."""
    text = (
        f"007 ::: Emma (0815) ::: Jane Austen ::: A.\n"
        f"{MAX_INDEX} ::: Emma (9) ::: Jane Austen ::: A.\n"
        f"8 ::: Emma (1815) ::: Jane Austen ::: A.\n"
        f"9 ::: The Art of War (-500) ::: Sun Tzu ::: A.\n"
        f"10 ::: The Art of War (500 BCE) ::: Sun Tzu ::: A.\n"
        f"11 ::: Beowulf (1000 AD) ::: Anonymous ::: A.\n"
    )
    books = parse_book_text(text, "variations.txt")
    assert [(book.index, book.year) for book in books] == [
        (7, 815),
        (MAX_INDEX, 9),
        (8, 1815),
        (9, -500),
        (10, -500),
        (11, 1000),
    ]
    path = tmp_path / "variations.txt"
    path.write_text(text)
    assert parse_book_file(path).books == tuple(books)


# -- Nothing outside the books folder and the data directory is read or written -----------------

_WRITE_EVENTS = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.chmod",
    "os.chown", "os.utime", "os.truncate", "os.mkfifo", "os.mknod", "shutil.copyfile",
    "shutil.copymode", "shutil.copystat", "shutil.copytree", "shutil.move", "shutil.rmtree",
    "tempfile.mkstemp", "tempfile.mkdtemp", "sqlite3.connect",
}  # fmt: skip
_READ_EVENTS = {"open", "os.listdir", "os.scandir", "os.readlink"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class _FileAccess:
    recording: bool = False
    read: set[str] | None = None
    written: set[str] | None = None


_ACCESS = _FileAccess()


def _paths(args: tuple) -> set[str]:
    """The paths an event names, each also as its real path: a read through a symlink counts as
    a read of the file it leads to."""
    paths = set()
    for arg in args:
        if isinstance(arg, str | bytes | os.PathLike) and arg not in ("", ":memory:"):
            path = os.fsdecode(arg)
            paths.update((os.path.abspath(path), os.path.realpath(path)))
    return paths


def _audit(event: str, args: tuple) -> None:
    if not _ACCESS.recording:
        return
    if event == "open":
        path, mode, flags = args
        writes = bool(mode and set(mode) & set("wax+")) or bool(flags & _WRITE_FLAGS)
        (_ACCESS.written if writes else _ACCESS.read).update(_paths((path,)))
    elif event in _WRITE_EVENTS:
        _ACCESS.written.update(_paths(args))
    elif event in _READ_EVENTS:
        _ACCESS.read.update(_paths(args))


@pytest.fixture(scope="session")
def file_access() -> _FileAccess:
    """Every path this process opens, lists or changes while `recording` (audit hooks, PEP 578).

    A hook cannot be removed: it is installed once and costs a flag test while not recording.
    """
    sys.addaudithook(_audit)
    return _ACCESS


def test_nothing_outside_books_and_data_is_read_or_written(
    tmp_path: Path, file_access: _FileAccess
) -> None:
    """A real fetch_data run, books and data in two folders of tmp_path, a link to a third.

    Dagster's own instance (run and event storage, step outputs, compute logs) lives in its
    DAGSTER_HOME, here the test instance's temporary folder, and is left out; so are the
    installed packages and model the process imports and loads.
    """
    books, outside = write_catalogue(tmp_path)
    data_dir = tmp_path / "data"
    before = tree_state(tmp_path)
    file_access.read, file_access.written = set(), set()
    with dg.instance_for_test() as instance:
        file_access.recording = True
        try:
            # Two runs: the first refuses files and loads the others, the second skips them.
            for _ in range(2):
                result = fetch_data_job().execute_in_process(
                    run_config=fetch_data_run_config(books, data_dir),
                    instance=instance,
                    raise_on_error=False,
                )
        finally:
            file_access.recording = False
        instance_root = Path(instance.root_directory)
        assert "load_embeddings_to_vector_db" in steps_that_ran(instance, result.run_id)["success"]

    touched = file_access.read | file_access.written
    assert any(Path(path).is_relative_to(books) for path in file_access.read)
    assert any(Path(path).is_relative_to(data_dir) for path in file_access.written)
    assert {
        path
        for path in touched
        if Path(path).is_relative_to(tmp_path)
        and not Path(path).is_relative_to(books)
        and not Path(path).is_relative_to(data_dir)
    } == set()
    assert {
        path
        for path in file_access.written
        if not Path(path).is_relative_to(data_dir) and not Path(path).is_relative_to(instance_root)
    } == set()
    assert not any(Path(path).is_relative_to(outside) for path in touched)
    after = tree_state(tmp_path)
    assert {
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    } <= {path for path in after if Path(path).is_relative_to(data_dir)}
