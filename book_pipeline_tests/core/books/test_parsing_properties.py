"""The parser on random input: valid books, or the project's own BookFileError, nothing else.

Any other exception (an IndexError, a ValueError from int(), a RecursionError) would reach
Dagster as a crash without a file name or line, and would not be recorded in the ledger.
"""

from dataclasses import astuple, replace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from book_pipeline.core.books.parsing import (
    MAX_LINE_CHARS,
    BookFileError,
    BookRecord,
    format_book_line,
    format_year,
    parse_book_bytes,
    parse_book_text,
    parse_year,
)

# Hypothesis keeps its examples in the checkout (.hypothesis/, ignored once its .gitignore is
# written): one worker runs these and the test that checks `git status` is unchanged.
pytestmark = pytest.mark.xdist_group("project_checkout")

FILE_NAME = "random.txt"
PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Pieces the format cares about, mixed into random text so it hits the interesting branches.
_FORMAT_PIECES = st.sampled_from(
    [":", ":::", " ::: ", "(", ")", " (1999)", "\n", "\r\n", "\ufeff", " ", "\t", "0", "7", "-"]
)
_TEXT = st.lists(st.one_of(st.characters(), _FORMAT_PIECES), max_size=150).map("".join)
_NASTY_FIELD = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=":() 0123456789abc\t\r\u00a0\u2028", max_size=12),
)
_GOOD_FIELD = st.text(st.characters(exclude_characters="\n"), min_size=1, max_size=30).filter(
    lambda text: text.strip() and ":::" not in text
)
_NASTY_INDEX = st.one_of(
    st.integers(min_value=-5, max_value=2**64).map(str),
    st.text(alphabet="0123456789", min_size=1, max_size=30),
    _NASTY_FIELD,
)
_GOOD_INDEX = st.one_of(
    st.integers(min_value=0, max_value=20).map(str),
    st.integers(min_value=0, max_value=2**63 - 1).map(str),
    st.integers(min_value=0, max_value=99).map("{:05d}".format),  # leading zeros
)
_ERAS = ["BC", "BCE", "AD", "CE"]
_NASTY_YEAR = st.one_of(
    st.integers(min_value=-99_999, max_value=99_999).map(str),
    # Eras almost as the format has them: other case, no space, two spaces, dots, a sign, year 0.
    st.builds(
        "{}{}{}".format,
        st.integers(min_value=-10, max_value=99_999).map(str),
        st.sampled_from(["", " ", "  ", "\t"]),
        st.sampled_from([*_ERAS, "bc", "Bc", "B.C.", "A.D.", "ad", "BCEE"]),
    ),
    st.sampled_from(["0", "-0", "0000", "0 BC", "0 AD", "AD 1066", "- 5", "\u2212500"]),
    _NASTY_FIELD,
)
_GOOD_YEAR = st.one_of(
    st.integers(min_value=-9999, max_value=9999).filter(bool).map(str),
    st.builds("{} {}".format, st.integers(min_value=1, max_value=9999), st.sampled_from(_ERAS)),
    st.integers(min_value=1, max_value=999).map("{:04d}".format),  # leading zeros
)


def _mostly(draw: st.DrawFn, good: st.SearchStrategy[str], nasty: st.SearchStrategy[str]) -> str:
    """A valid field four times out of five, so whole lines are often valid too."""
    return draw(nasty if draw(st.integers(0, 4)) == 0 else good)


@st.composite
def structured_lines(draw: st.DrawFn) -> str:
    """Lines that look like book lines: random fields, sometimes too few, too many or reordered."""
    title = _mostly(draw, _GOOD_FIELD, _NASTY_FIELD)
    title_and_year = (
        f"{title} ({_mostly(draw, _GOOD_YEAR, _NASTY_YEAR)})" if draw(st.integers(0, 9)) else title
    )
    fields = [
        _mostly(draw, _GOOD_INDEX, _NASTY_INDEX),
        title_and_year,
        _mostly(draw, _GOOD_FIELD, _NASTY_FIELD),
        _mostly(draw, _GOOD_FIELD, _NASTY_FIELD),
    ]
    if draw(st.integers(0, 19)) == 0:
        fields = draw(st.permutations(fields))
    if draw(st.integers(0, 9)) == 0:
        fields = fields[: draw(st.integers(0, 3))] + draw(st.lists(_NASTY_FIELD, max_size=2))
    separator = draw(st.sampled_from([" ::: ", " ::: ", ":::", "  :::\t", " :: "]))
    return separator.join(fields)


_STRUCTURED_TEXT = st.lists(
    st.one_of(structured_lines(), structured_lines(), st.sampled_from(["", "   ", "\r"])),
    max_size=8,
).map("\n".join)


def assert_valid_or_book_file_error(parse, data) -> None:
    try:
        books = parse(data, FILE_NAME)
    except BookFileError as error:
        assert error.file_name == FILE_NAME
        assert error.problem
        assert str(error).startswith(FILE_NAME)
        return
    assert_valid_books(books)


def assert_valid_books(books: list[BookRecord]) -> None:
    assert books, "an empty result must be a BookFileError ('no book lines')"
    for book in books:
        assert isinstance(book, BookRecord)
        assert book.title and book.author and book.description
        assert book.title == book.title.strip() and book.author == book.author.strip()
        assert 0 <= book.index <= 2**63 - 1
        assert -9999 <= book.year <= 9999 and book.year != 0
        assert book.source_file == FILE_NAME and book.line_number >= 1
    assert len({book.index for book in books}) == len(books)
    # What was parsed, written back in the format, parses to the same books.
    text = "\n".join(
        format_book_line(book.index, book.title, book.year, book.author, book.description)
        for book in books
    )
    reparsed = parse_book_text(text, FILE_NAME)
    renumbered = [replace(book, line_number=n) for n, book in enumerate(books, start=1)]
    assert [astuple(book) for book in reparsed] == [astuple(book) for book in renumbered]


@PROPERTY_SETTINGS
@given(_TEXT)
def test_random_text_parses_or_raises_book_file_error(text: str) -> None:
    assert_valid_or_book_file_error(parse_book_text, text)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300))
@example(b"\xff\xfe1 ::: T (1) ::: A ::: D")
@example(b"1 ::: T (1) ::: A ::: D\x00")
def test_random_bytes_parse_or_raise_book_file_error(data: bytes) -> None:
    assert_valid_or_book_file_error(parse_book_bytes, data)


@PROPERTY_SETTINGS
@given(_STRUCTURED_TEXT)
@example("1 ::: T (1) ::: A ::: D")
@example("1 ::: T (-500) ::: A ::: D\n2 ::: T (500 BC) ::: A ::: D\n3 ::: T (1 CE) ::: A ::: D")
@example("1 ::: T (0) ::: A ::: D")
@example(f"{'0' * 5000}1 ::: T (1) ::: A ::: D")  # int() refuses > 4,300 digits by itself
@example(f"{'9' * 5000} ::: T (1) ::: A ::: D")
@example(f"{2**63} ::: T (1) ::: A ::: D")
@example("1 ::: T (1) ::: A ::: " + "d" * MAX_LINE_CHARS)
def test_structured_lines_parse_or_raise_book_file_error(text: str) -> None:
    assert_valid_or_book_file_error(parse_book_text, text)


@PROPERTY_SETTINGS
@given(_STRUCTURED_TEXT)
def test_utf8_encoded_text_parses_as_bytes_like_as_text(text: str) -> None:
    """parse_book_bytes is decode + parse_book_text: the same books or the same error."""
    # Lone surrogates are str but not UTF-8: as bytes they are a decode error, as they must be.
    data = text.encode("utf-8", "surrogatepass")
    outcomes = []
    for parse, argument in ((parse_book_text, text), (parse_book_bytes, data)):
        try:
            outcomes.append([astuple(book) for book in parse(argument, FILE_NAME)])
        except BookFileError as error:
            outcomes.append(str(error))
    # NUL is text to parse_book_text and binary content to parse_book_bytes.
    if "\x00" not in text and not any("\ud800" <= char <= "\udfff" for char in text):
        assert outcomes[0] == outcomes[1]


@PROPERTY_SETTINGS
@given(st.integers(min_value=-9999, max_value=9999).filter(bool))
def test_every_written_form_of_a_year_is_that_year(year: int) -> None:
    """-500, 500 BC and 500 BCE are one year; 1066, 1066 AD and 1066 CE another; the shown
    form (format_year) reads back as the same year."""
    eras = ("BC", "BCE") if year < 0 else ("AD", "CE")
    forms = [str(year), f"{year:05d}" if year < 0 else f"{year:04d}"]
    forms += [f"{abs(year)} {era}" for era in eras] + [format_year(year)]
    assert {parse_year(form) for form in forms} == {year}
    line = f"1 ::: T ({format_year(year)}) ::: A ::: D"
    assert [book.year for book in parse_book_text(line, FILE_NAME)] == [year]
