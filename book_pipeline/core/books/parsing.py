"""Reading book description files.

One book per line: `<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>`.

Pure functions with no Dagster in them, so every accept/reject rule is testable on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.books.files import BookFileError, FileSnapshot, read_book_file

FIELD_SEPARATOR = ":::"
FIELD_COUNT = 4
# A description is a paragraph; a line far longer than this is a broken export, not a book.
MAX_LINE_CHARS = 20_000
# Qdrant stores payload integers as signed 64-bit: a bigger index could not be stored or filtered.
MAX_INDEX = 2**63 - 1
EXPECTED_LINE = "<index> ::: <Title> (<Year>) ::: <Author> ::: <Description>"
# The forms of a year, for error messages; `parse_year` is the rule.
YEAR_FORMS = (
    "1 to 4 digits, as 1815, 1066 AD or 1066 CE, and before AD 1 as -500, 500 BC or 500 BCE; "
    "there is no year 0"
)

# Years are historical, as catalogues write them: -500 is 500 BC, and 1 BC is followed by AD 1,
# so there is no year 0. An era comes after the number, in capitals, after one space.
_YEAR_PATTERN = r"-?\d{1,4}|\d{1,4} (?:BCE?|AD|CE)"
_YEAR = re.compile(_YEAR_PATTERN)
_TITLE_AND_YEAR = re.compile(rf"^(?P<title>.*\S)\s*\((?P<year>{_YEAR_PATTERN})\)$")
# Parentheses at the end with a digit in them: meant as a year, so the error says what one is.
_ATTEMPTED_YEAR = re.compile(r"\((?P<year>[^()]*\d[^()]*)\)$")
_BEFORE_COMMON_ERA = ("BC", "BCE")
_BOM = "\ufeff"


@dataclass(frozen=True)
class BookRecord:
    index: int
    title: str
    year: int  # -500 is 500 BC; never 0
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
            f"{_preview(title_and_year)!r}{_order_hint(fields)}{_year_hint(title_and_year)}"
        )
    title = match["title"].strip()
    try:
        year = parse_year(match["year"])
    except ValueError as error:
        raise fail(
            f"expected a year in '<Title> (<Year>)' (second field), found "
            f"{_preview(title_and_year)!r}; {error}"
        ) from None
    if not author:
        raise fail("the author is empty")
    if not description:
        raise fail("the description is empty")
    return BookRecord(
        index=int(significant_digits),
        title=title,
        year=year,
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


def parse_year(text: str) -> int:
    """`1815` or `1815 AD` or `1815 CE` is 1815; `-500` or `500 BC` or `500 BCE` is -500.

    Raise ValueError for anything else, and for year 0, which no calendar of catalogues has.
    """
    if _YEAR.fullmatch(text) is None:
        raise ValueError(f"a year is {YEAR_FORMS}")
    number, _, era = text.partition(" ")
    year = -int(number) if era in _BEFORE_COMMON_ERA else int(number)
    if year == 0:
        raise ValueError("there is no year 0 (1 BC is followed by AD 1: write -1 or 1)")
    return year


def format_year(year: int) -> str:
    """How people read a year: 1815, 500 BC."""
    return f"{-year} BC" if year < 0 else str(year)


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


def _year_hint(title_and_year: str) -> str:
    attempt = _ATTEMPTED_YEAR.search(title_and_year)
    if attempt and not _YEAR.fullmatch(attempt["year"]):
        return f"; a year is {YEAR_FORMS}"
    return ""


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _preview(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
