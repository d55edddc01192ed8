"""The layout's promise: the core and the CLI run where Dagster cannot even be imported, each
CLI command loads only what it needs, and no module imports, even lazily, one that imports it."""

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import book_pipeline
import book_pipeline.cli
import book_pipeline.core
from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import format_book_line
from book_pipeline_tests.support.runs import SampleLoad

# Run first in each subprocess: any import of Dagster (or a dagster-* package) fails.
BLOCK_DAGSTER = """
import sys

class BlockDagster:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "dagster" or name.startswith("dagster_"):
            raise ImportError(f"{name} must not be imported here")
        return None

sys.meta_path.insert(0, BlockDagster())
"""

CORE_AT_WORK = """
import importlib, json, sys
from pathlib import Path

modules = sys.argv[1].split(",")
for module in modules:
    importlib.import_module(module)

from book_pipeline.core.books.files import list_book_files
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.search import search_books
from book_pipeline.core.store.opening import open_vector_store

parsed = parse_book_file(list_book_files(Path(sys.argv[2]))[0])
embedder = shared_local_embedder()
vectors = embedder.embed([book.embedding_text for book in parsed.books])
with open_vector_store("books", Path(sys.argv[3])) as store:
    store.ensure_collection(embedder.dimension, embedder.model_name)
    store.upsert_books(parsed.books, vectors, parsed.sha256)
    wanted = parsed.books[-1]
    [hit] = search_books(store, embedder, wanted.embedding_text, 1)
print(json.dumps({
    "books": len(parsed.books),
    "vector_shape": list(vectors.shape),
    "wanted": [wanted.title, wanted.source_file],
    "hit": [hit.title, hit.source_file],
    "dagster_loaded": sorted(name for name in sys.modules if name.startswith("dagster")),
}))
"""

# Runs one command in process, then reports which of the heavy packages it imported.
CLI_COMMAND = """
import json, sys
from book_pipeline.cli import main

code = main(sys.argv[1:])
heavy = ("dagster", "qdrant_client", "qdrant_edge", "fastembed", "onnxruntime", "openai",
         "diskcache", "numpy", "pydantic", "huggingface_hub")
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(heavy))
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def submodules(package: object) -> list[str]:
    return [
        module.name for module in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    ]


def run_without_dagster(
    program: str, *arguments: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_DAGSTER + program, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_the_blocker_does_block_dagster() -> None:
    completed = run_without_dagster("import book_pipeline.definitions")
    assert completed.returncode != 0
    assert "dagster must not be imported here" in completed.stderr


def test_core_and_cli_import_parse_embed_and_search_without_dagster(tmp_path: Path) -> None:
    modules = [
        *submodules(book_pipeline.core),
        book_pipeline.cli.__name__,
        *submodules(book_pipeline.cli),
    ]
    assert "book_pipeline.core.settings" in modules and "book_pipeline.core.store.edge" in modules

    completed = run_without_dagster(
        CORE_AT_WORK, ",".join(modules), str(SAMPLE_BOOKS_DIR), str(tmp_path / "edge")
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["books"] > 1
    assert result["vector_shape"] == [result["books"], 384]
    assert result["hit"] == result["wanted"]
    assert result["dagster_loaded"] == []


@pytest.fixture
def cli_environment(sample_load: SampleLoad, tmp_path: Path) -> dict[str, str]:
    """The sample load's data folder, a books folder of its own (no developer settings: the
    tests' environment has none, conftest.py)."""
    books_dir = tmp_path / "books"
    books_dir.mkdir()
    return {
        **os.environ,
        "BOOK_PIPELINE_DATA_DIR": str(sample_load.data_dir),
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
    }


# What each command may load: search only the bundled model's runtime (onnxruntime, numpy; not
# fastembed, whose import alone was half of search's start-up) and the Edge store; info and
# status only the Edge store (status counts each file's books there); add-books none of the heavy
# packages.
@pytest.mark.parametrize(
    ("arguments", "allowed"),
    [
        (
            ["add-books", "new", format_book_line(1, "Emma", 1815, "Jane Austen", "Matchmaking.")],
            set(),
        ),
        (["status"], {"qdrant_edge", "numpy"}),
        (["info"], {"qdrant_edge", "numpy"}),
        (
            ["search", "a detective on a train"],
            {"qdrant_edge", "numpy", "onnxruntime"},
        ),
    ],
    ids=["add-books", "status", "info", "search"],
)
def test_cli_commands_load_no_dagster_and_only_what_they_need(
    cli_environment: dict[str, str], arguments: list[str], allowed: set[str]
) -> None:
    completed = run_without_dagster(CLI_COMMAND, *arguments, environment=cli_environment)

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    assert set(report["loaded"]) <= allowed, report["loaded"]
    assert "dagster" not in report["loaded"]


def project_imports() -> dict[str, set[str]]:
    """Each book_pipeline module and the book_pipeline modules it imports, at module level or
    inside a function (a lazy import is still a dependency)."""
    package_root = Path(book_pipeline.__file__).parent
    modules: dict[str, Path] = {}
    for path in package_root.rglob("*.py"):
        parts = path.relative_to(package_root.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    imported.add(submodule if submodule in modules else node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    finished: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in finished:
                visit(imported, [*path, imported])
        finished.add(module)

    for module in sorted(graph):
        if module not in finished:
            visit(module, [module])
    return cycles


def test_no_module_imports_one_that_imports_it() -> None:
    graph = project_imports()
    assert "book_pipeline.core.store.opening" in graph["book_pipeline.cli.search"]
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]


def test_the_store_interface_imports_none_of_its_engines() -> None:
    graph = project_imports()
    store_modules = {module for module in graph if module.startswith("book_pipeline.core.store.")}
    # The keyword and title-and-author vectors are part of what a stored point is, and the
    # store's errors part of its interface; every other store module builds on the interface.
    point_modules = {
        "book_pipeline.core.store.base",
        "book_pipeline.core.store.errors",
        "book_pipeline.core.store.keyword_vectors",
        "book_pipeline.core.store.name_vectors",
    }
    engines = store_modules - point_modules
    for module in point_modules:
        assert not graph[module] & engines, module
    assert graph["book_pipeline.core.store.copying"] & store_modules == {
        "book_pipeline.core.store.base",
        "book_pipeline.core.store.errors",
    }
    for engine in ("edge", "server"):
        assert "book_pipeline.core.store.opening" not in graph[f"book_pipeline.core.store.{engine}"]


def test_only_the_server_engine_and_its_versions_import_qdrant_client() -> None:
    package_root = Path(book_pipeline.__file__).parent
    importers = sorted(
        str(path.relative_to(package_root))
        for path in package_root.rglob("*.py")
        if "qdrant_client" in path.read_text()
    )
    # The server engine's modules (the store, its conversions, connecting, its versions: the
    # collection alias), imported only with a URL or to copy the previous version's store.
    assert importers == [
        "core/store/server.py",
        "core/store/server_conversions.py",
        "core/store/server_opening.py",
        "core/store/server_versions.py",
    ]


# `os`'s ways into the process environment; a copy of it for a child process counts too.
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb"}


def environment_reads(path: Path) -> list[int]:
    """The lines of a module that touch the environment: `os.environ`, `os.getenv`, or an import
    of either from `os`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        attribute_of_os = (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )
        import_from_os = (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENVIRONMENT_NAMES for alias in node.names)
        )
        if attribute_of_os or import_from_os:
            lines.append(node.lineno)
    return lines


def test_only_the_configuration_module_reads_the_environment() -> None:
    """Every variable is a row of core/settings.py's table; everyone else reads through it."""
    package = Path(book_pipeline.core.__file__).parents[1]
    reads = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if (lines := environment_reads(path))
    }
    assert list(reads) == ["core/settings.py"], reads


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# The configuration table is one job, however many variables it lists.
LONG_MODULES_ALLOWED = {"core/settings.py"}


def oversized(package_root: Path) -> list[str]:
    """The package's modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES
    (from `def` to the last line, docstring included), as 'path: N lines' and
    'path:function: N lines'."""
    found = []
    for path in sorted(package_root.rglob("*.py")):
        name = str(path.relative_to(package_root))
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES_ALLOWED:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.name}: {length} lines")
    return found


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    assert oversized(Path(book_pipeline.__file__).parent) == []


def test_the_size_check_finds_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    long_function = "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    (tmp_path / "short.py").write_text("def short():\n    return 1\n")
    (tmp_path / "functions.py").write_text(long_function)
    (tmp_path / "module.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "settings.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))

    assert oversized(tmp_path) == [
        f"functions.py:long: {MAX_FUNCTION_LINES + 1} lines",
        f"module.py: {MAX_MODULE_LINES + 1} lines",
    ]
