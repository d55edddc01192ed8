"""The README's commands are the ones CI runs, and a newcomer can type every one of them as
shown; the README stays short, and every link in it and in docs/ leads somewhere."""

import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import metadata
from pathlib import Path

import click
import dagster as dg
import pytest

from book_pipeline.cli import build_parser
from book_pipeline.cli.invocation import book_pipeline_command
from book_pipeline_tests.support.runs import SampleLoad

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    [test_command] = [line for line in ci_lines if "pytest" in line and not line.startswith("#")]
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{test_command}\n```" in readme


def test_configuration_documents_every_environment_variable() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    sources = "\n".join(path.read_text() for path in (ROOT / "book_pipeline").rglob("*.py"))
    for variable in (
        "BOOK_PIPELINE_BOOKS_DIR",
        "BOOK_PIPELINE_DATA_DIR",
        "BOOK_PIPELINE_COLLECTION",
        "BOOK_PIPELINE_EMBEDDER",
        "BOOK_PIPELINE_EMBEDDING_MODEL",
        "BOOK_PIPELINE_SETTLE_SECONDS",
        "BOOK_PIPELINE_MAX_FILES_PER_RUN",
        "BOOK_PIPELINE_MAX_FILE_MB",
        "BOOK_PIPELINE_SENSOR_INTERVAL_SECONDS",
        "QDRANT_URL",
        "QDRANT_API_KEY",
        "QDRANT_SHARD_NUMBER",
        "QDRANT_REPLICATION_FACTOR",
        "QDRANT_WRITE_CONSISTENCY_FACTOR",
        "QDRANT_ON_DISK_VECTORS",
        "QDRANT_ON_DISK_PAYLOAD",
        "QDRANT_HNSW_M",
        "QDRANT_HNSW_EF_CONSTRUCT",
        "QDRANT_INT8_QUANTIZATION",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "BOOK_PIPELINE_STEP_RETRIES",
        "BOOK_PIPELINE_RETRY_DELAY_SECONDS",
        "BOOK_PIPELINE_ALERT_WEBHOOK_URL",
        "BOOK_PIPELINE_ALERT_EMAIL_TO",
        "BOOK_PIPELINE_ALERT_EMAIL_FROM",
        "BOOK_PIPELINE_ALERT_SMTP_HOST",
        "BOOK_PIPELINE_ALERT_SMTP_PORT",
        "BOOK_PIPELINE_ALERT_SMTP_PASSWORD",
        "BOOK_PIPELINE_LOG_LEVEL",
        "BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK",
        "BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN",
        "BOOK_PIPELINE_DEAD_RUN_GRACE_SECONDS",
    ):
        assert f"| `{variable}` |" in reference
        assert f'"{variable}"' in sources


def test_readme_is_short_and_its_variables_are_in_the_reference() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    reference = (ROOT / "docs" / "configuration.md").read_text()
    readme_variables = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert readme_variables, "README.md has no table of variables"
    for variable in readme_variables:
        # Dagster's own variable is explained in the reference's text, not in the project's table.
        assert (f"`{variable}`" if variable == "DAGSTER_HOME" else f"| `{variable}` |") in reference


def outside_code(markdown: str) -> str:
    """The text of a markdown file without its fenced code blocks and inline code."""
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", without_blocks)


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered."""
    anchors: set[str] = set()
    without_blocks = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", without_blocks, flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        numbered, count = anchor, 0
        while numbered in anchors:
            count += 1
            numbered = f"{anchor}-{count}"
        anchors.add(numbered)
    return anchors


@pytest.mark.parametrize("source", MARKDOWN_FILES, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(source: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", outside_code(source.read_text()))
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    for link in relative:
        path, _, anchor = link.partition("#")
        target = (source.parent / path).resolve() if path else source
        assert target.exists(), f"{source.name}: {link} leads to no file"
        if anchor and target.suffix == ".md":
            assert anchor in heading_anchors(target.read_text()), (
                f"{source.name}: {link} leads to no heading of {target.name}"
            )


# Every command the README shows, as a newcomer types it from a fresh clone: each names a real
# program, subcommand and options (parsed by the programs' own parsers, without running them),
# and the cheap ones run as shown.

VENV_PREFIX = ".venv/bin/"


def readme_command_lines() -> list[str]:
    """The lines of the README's ```bash blocks, comments kept (shlex drops them)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def simple_commands(line: str) -> list[list[str]]:
    """A shell line's commands, split at `&&`, `||`, `;` and `|`, as argument lists."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def readme_commands() -> list[list[str]]:
    return [command for line in readme_command_lines() for command in simple_commands(line)]


def quickstart_hint() -> list[str]:
    """The search the quickstart's log suggests, as the README shows it."""
    readme = (ROOT / "README.md").read_text()
    [hint] = re.findall(r" - search them: (.+)$", readme, flags=re.MULTILINE)
    return shlex.split(hint)


def click_context(group: click.Group, arguments: list[str]) -> click.Context:
    """Parse `arguments` with a click program's own parser, down its subcommands; unknown
    subcommands and options raise `click.UsageError`."""
    command: click.Command = group
    context = click.Context(group, info_name=group.name)
    while isinstance(command, click.Group):
        name, *arguments = arguments
        subcommand = command.get_command(context, name)
        if subcommand is None:
            raise click.UsageError(f"no subcommand {name!r}")
        command = subcommand
        context = click.Context(command, parent=context, info_name=name)
    return command.make_context(command.name, list(arguments), parent=context.parent)


def check_dagster_names(parameters: dict[str, object]) -> None:
    """The module, job and assets a Dagster command names exist."""
    module = parameters.get("module_name")
    if module:
        for name in module if isinstance(module, tuple) else (module,):
            importlib.import_module(name)
    from book_pipeline.definitions import defs

    for job in (parameters.get("job_name"), parameters.get("job")):
        if job:
            defs.resolve_job_def(job)
    if parameters.get("assets"):
        for key in str(parameters["assets"]).split(","):
            defs.resolve_assets_def(key)


def check_command(arguments: list[str]) -> None:
    program, *rest = arguments
    program = program.removeprefix(VENV_PREFIX)
    if program == "book-pipeline":
        build_parser().parse_args(rest)
    elif program == "dagster":
        from dagster._cli import cli as dagster_cli

        check_dagster_names(click_context(dagster_cli, rest).params)
    elif program == "dg":
        from dagster_dg_cli.cli import cli as dg_cli

        check_dagster_names(click_context(dg_cli, rest).params)
    elif program == "python3":
        assert rest == ["-m", "venv", ".venv"], arguments
    elif program == "pip":
        install, *options, target = rest
        assert install == "install" and set(options) <= {"-q", "-e"}, arguments
        extras = re.fullmatch(r"\.(?:\[(\w+)\])?", target)
        assert extras, arguments
        if extras.group(1):
            assert extras.group(1) in metadata("book_pipeline").get_all("Provides-Extra")
    elif program == "pytest":
        assert rest == ["-q"], arguments
    elif program == "source":
        assert rest == [".venv/bin/activate"] and (Path(sys.prefix) / "bin" / "activate").exists()
    elif program == "printf":
        assert rest[0] == "%s\\n", arguments
    else:
        raise AssertionError(f"the README runs {program!r}, which this test does not know")


def test_the_readme_shows_the_commands_this_test_checks() -> None:
    programs = {command[0].removeprefix(VENV_PREFIX) for command in readme_commands()}
    assert {"book-pipeline", "dagster", "dg", "pytest", "source"} <= programs
    assert quickstart_hint()[:2] == [f"{VENV_PREFIX}book-pipeline", "search"]


@pytest.mark.parametrize(
    "arguments",
    [*readme_commands(), quickstart_hint()],
    ids=lambda arguments: shlex.join(arguments)[:60],
)
def test_every_readme_command_names_a_real_program_subcommand_and_options(
    arguments: list[str],
) -> None:
    check_command(arguments)


def test_the_checker_refuses_an_unknown_option_or_job() -> None:
    with pytest.raises(SystemExit):
        check_command(["book-pipeline", "status", "[--json]"])
    with pytest.raises(click.UsageError):
        check_command([".venv/bin/dagster", "job", "execute", "--no-such-option"])
    with pytest.raises(dg.DagsterInvariantViolationError):
        check_command(["dg", "launch", "--job", "no_such_job"])


def test_the_quickstart_hint_is_what_the_run_prints_from_the_project_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("the project's own .venv runs the tests in CI and the README")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # the venv not active
    assert book_pipeline_command() == quickstart_hint()[0]


def test_the_readme_book_pipeline_commands_run_as_shown(
    sample_load: SampleLoad, tmp_path: Path
) -> None:
    """In a fresh folder, the venv active (its bin first on PATH), the sample load's store: the
    commands that need no server run and succeed. (The dagster and dg commands run in
    test_jobs, test_dg, test_ui and lesson/test_definitions.)"""
    data_dir = tmp_path / "data"
    shutil.copytree(sample_load.data_dir, data_dir)
    environment = {
        **{
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("BOOK_PIPELINE_", "QDRANT_", "OPENAI_"))
        },
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
    }
    lines = [
        line
        for line in readme_command_lines()
        if line.startswith(("book-pipeline", "printf")) and "migrate-store" not in line
    ]
    assert len(lines) >= 7
    for line in lines:
        completed = subprocess.run(
            ["bash", "-c", line],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, f"{line}\n{completed.stderr}"
        assert completed.stdout.strip(), line


# The steps a file maps into; every other step runs once per run.
MAPPED_STEPS = {
    "transform_book_description_file",
    "create_vector_embeddings",
    "refuse_book_description_file",
    "refuse_over_budget_book_file",
}
NUMBER_WORDS = {5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


def test_the_readme_graph_draws_every_step_and_counts_them_as_the_job_runs_them() -> None:
    from book_pipeline.definitions import defs

    job = defs.resolve_job_def("fetch_data")
    steps = {node.name for node in job.graph.nodes if node.name != "book_embeddings"}
    asset_graph = job.graph.node_named("book_embeddings").definition
    steps |= {node.name for node in asset_graph.nodes}
    readme = (ROOT / "README.md").read_text()
    drawing = readme[readme.index("list_book_description_files ──") :]
    drawing = drawing[: drawing.index("```")]
    assert [step for step in sorted(steps) if step not in drawing] == []
    per_run = len(steps - MAPPED_STEPS)
    assert f"{NUMBER_WORDS[per_run]} per run" in readme
    assert f"200 good files has {2 * 200 + per_run}" in readme.replace("\n", " ")
