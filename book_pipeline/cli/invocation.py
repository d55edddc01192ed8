"""The `book-pipeline` command as a message can tell a user to type it, here: a run's log
suggests a search, and the user pastes it into the shell they started the run from."""

import shlex
import shutil
import sys
from pathlib import Path

COMMAND = "book-pipeline"


def book_pipeline_command() -> str:
    """The name that runs this installation's `book-pipeline` from the working folder, quoted
    for a POSIX shell.

    Its bare name where the shell finds it on PATH (an active venv, a system install); otherwise
    (a venv that is not active, as the README's quickstart runs `.venv/bin/dagster`) its path:
    `.venv/bin/book-pipeline` inside the working folder, the full path outside it. The path is
    beside this interpreter, where the installer put the console script.
    """
    script = Path(sys.executable).parent / COMMAND
    if not script.exists():  # not installed as a console script (a source tree on sys.path)
        return COMMAND
    # PATH is the shell's, not a setting of the project: read it where the shell would.
    on_path = shutil.which(COMMAND)
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return COMMAND
    working_folder = Path.cwd()
    if script.is_relative_to(working_folder):
        return shlex.quote(str(script.relative_to(working_folder)))
    return shlex.quote(str(script))
