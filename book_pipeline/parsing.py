"""Reading book description files.

One book per line: `<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>`.

Pure functions with no Dagster in them, so every accept/reject rule is testable on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.book_files import BookFileError, FileSnapshot, read_book_file

FIELD_SEPARATOR = ":::"
FIELD_COUNT = 4
# A description is a paragraph; a line far longer than this is a broken export, not a book.
MAX_LINE_CHARS = 20_000
# Qdrant stores payload integers as signed 64-bit: a bigger index could not be stored or filtered.
MAX_INDEX = 2**63 - 1
EXPECTED_LINE = "<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>"

_TITLE_AND_YEAR = re.compile(r"^(?P<title>.*\S)\s*\((?P<year>\d{1,4})\)$")
_BOM = "\ufeff"


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
            f"({EXPECTED_LINE}), found {len(fields)}: {_preview(line)!r}"
        )
    index_text, title_and_year, author, description = fields
    if not _is_index(index_text):
        raise fail(
            f"expected a whole number as the index (first field), found "
            f"{_preview(index_text)!r}{_order_hint(fields)}"
        )
    # Leading zeros are accepted ("007" is 7); the length test keeps int() off huge strings.
    significant_digits = index_text.lstrip("0") or "0"
    if len(significant_digits) > len(str(MAX_INDEX)) or int(significant_digits) > MAX_INDEX:
        raise fail(
            f"index {_preview(index_text)} is too large: the largest index is {MAX_INDEX:,} "
            "(Qdrant stores payload integers as signed 64-bit)"
        )
    match = _TITLE_AND_YEAR.match(title_and_year)
    if match is None:
        raise fail(
            f"expected '<Title> (<Year>)' (second field), found "
            f"{_preview(title_and_year)!r}{_order_hint(fields)}"
        )
    title = match["title"].strip()
    if not author:
        raise fail("the author is empty")
    if not description:
        raise fail("the description is empty")
    return BookRecord(
        index=int(significant_digits),
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


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _order_hint(fields: list[str]) -> str:
    """When the fields are all there but in another order, say so instead of only 'wrong field'."""
    index_at = [position for position, field in enumerate(fields) if _is_index(field)]
    title_at = [position for position, field in enumerate(fields) if _TITLE_AND_YEAR.match(field)]
    if (index_at and index_at[0] != 0) or (title_at and title_at[0] != 1):
        return f"; the fields look out of order, expected {EXPECTED_LINE}"
    return ""


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
