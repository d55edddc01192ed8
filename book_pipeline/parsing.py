"""Reading book description files.

One book per line: `<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>`.

Pure functions with no Dagster in them, so every accept/reject rule is testable on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.book_files import FileSnapshot, read_book_file

FIELD_SEPARATOR = ":::"
FIELD_COUNT = 4
# A description is a paragraph; a line far longer than this is a broken export, not a book.
MAX_LINE_CHARS = 20_000

_TITLE_AND_YEAR = re.compile(r"^(?P<title>.*\S)\s*\((?P<year>\d{1,4})\)$")
_BOM = "\ufeff"


class BookFileError(ValueError):
    """A description file that cannot be read as books; names the file, the line and the problem."""

    def __init__(self, file_name: str, line_number: int | None, problem: str) -> None:
        self.file_name = file_name
        self.line_number = line_number
        self.problem = problem
        where = f"{file_name}, line {line_number}" if line_number else file_name
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class BookRecord:
    index: int
    title: str
    year: int
    author: str
    description: str
    source_file: str
    line_number: int

    @property
    def embedding_text(self) -> str:
        return f"{self.title}. {self.description}"

    @property
    def content_hash(self) -> str:
        """Hash of everything a reader sees; equal hashes mean nothing about the book changed."""
        fields = (str(self.index), self.title, str(self.year), self.author, self.description)
        return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(frozen=True)
class ParsedBookFile:
    snapshot: FileSnapshot
    sha256: str
    books: tuple[BookRecord, ...]

    @property
    def file_name(self) -> str:
        return self.snapshot.name


def parse_book_line(line: str, file_name: str, line_number: int) -> BookRecord:
    """Parse one non-blank line; raise BookFileError saying what was expected and what was found."""

    def fail(problem: str) -> BookFileError:
        return BookFileError(file_name, line_number, problem)

    if len(line) > MAX_LINE_CHARS:
        raise fail(f"line is {len(line):,} characters long, the limit is {MAX_LINE_CHARS:,}")
    fields = [field.strip() for field in line.split(FIELD_SEPARATOR)]
    if len(fields) != FIELD_COUNT:
        raise fail(
            f"expected {FIELD_COUNT} fields separated by '{FIELD_SEPARATOR}' "
            f"(<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>), "
            f"found {len(fields)}: {_preview(line)!r}"
        )
    index_text, title_and_year, author, description = fields
    if not index_text.isascii() or not index_text.isdigit():
        raise fail(f"expected a whole number as the index, found {_preview(index_text)!r}")
    match = _TITLE_AND_YEAR.match(title_and_year)
    if match is None:
        raise fail(f"expected '<Title> (<Year>)', found {_preview(title_and_year)!r}")
    title = match["title"].strip()
    if not author:
        raise fail("the author is empty")
    if not description:
        raise fail("the description is empty")
    return BookRecord(
        index=int(index_text),
        title=title,
        year=int(match["year"]),
        author=author,
        description=description,
        source_file=file_name,
        line_number=line_number,
    )


def parse_book_text(text: str, file_name: str) -> list[BookRecord]:
    """Parse a whole file's text: blank lines are skipped, CRLF and a BOM are accepted."""
    books: list[BookRecord] = []
    first_line_of_index: dict[int, int] = {}
    for line_number, raw_line in enumerate(text.removeprefix(_BOM).split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        book = parse_book_line(line, file_name, line_number)
        if book.index in first_line_of_index:
            raise BookFileError(
                file_name,
                line_number,
                f"index {book.index} is already used on line {first_line_of_index[book.index]}",
            )
        first_line_of_index[book.index] = line_number
        books.append(book)
    if not books:
        raise BookFileError(file_name, None, "the file contains no book lines")
    return books


def decode_book_bytes(data: bytes, file_name: str) -> str:
    """Decode strict UTF-8, naming the line of the first byte that is not text."""
    if b"\x00" in data:
        raise BookFileError(
            file_name, _line_of_offset(data, data.index(b"\x00")), "binary content (NUL byte)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BookFileError(
            file_name,
            _line_of_offset(data, error.start),
            f"not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
        ) from None


def parse_book_bytes(data: bytes, file_name: str) -> list[BookRecord]:
    return parse_book_text(decode_book_bytes(data, file_name), file_name)


def parse_book_data(snapshot: FileSnapshot, data: bytes) -> ParsedBookFile:
    books = parse_book_bytes(data, snapshot.name)
    return ParsedBookFile(snapshot, hashlib.sha256(data).hexdigest(), tuple(books))


def parse_book_file(path: Path) -> ParsedBookFile:
    """Read and parse one description file; the file itself is only read, never changed."""
    return parse_book_data(*read_book_file(path))


def format_book_line(index: int, title: str, year: int, author: str, description: str) -> str:
    return f"{index} ::: {title} ({year}) ::: {author} ::: {description}"


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
