"""The environment every test starts from: none of the shell's project, Qdrant or OpenAI variables.

A developer's shell may export `QDRANT_URL` (a real server's `books` collection) or
`OPENAI_BASE_URL` and `OPENAI_API_KEY` (a bill): a test that took them would load into, remove
from or pay that. So the tests' package removes them before anything imports book_pipeline (the
code location reads its resources when it is imported), and `conftest.py` removes them again
before every test; a test sets only what it needs. The processes tests start (the dagster CLI,
the daemon, the webserver) inherit `os.environ`, so they start from the same.
"""

from collections.abc import MutableMapping

from book_pipeline.core.settings import VARIABLES

# Prefixes of the variables read by the project, the Qdrant and the OpenAI clients: a variable
# the table does not name (OPENAI_ORG_ID, a QDRANT_ one of a newer client) goes too.
OUTSIDE_PREFIXES = ("BOOK_PIPELINE_", "QDRANT_", "OPENAI_")

# What the tests set for themselves. Step retries wait about 2, 6 and 14 s by default; the
# tests' runs retry within a fraction of a second (read once, when the ops are defined).
TEST_ENVIRONMENT = {VARIABLES.retry_delay_seconds.name: "0.05"}


def outside_variables(environ: MutableMapping[str, str]) -> list[str]:
    """The names in `environ` that would point a test at the outside world."""
    table = {variable.name for _, variable in VARIABLES.items()}
    return sorted(name for name in environ if name in table or name.startswith(OUTSIDE_PREFIXES))


def scrub(environ: MutableMapping[str, str]) -> None:
    """`environ` without the outside variables, with the tests' own."""
    for name in outside_variables(environ):
        del environ[name]
    environ.update(TEST_ENVIRONMENT)
