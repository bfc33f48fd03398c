"""The shape of the package: Dagster is declared in `pulse_pipeline/defs/` only, and modules stay
small enough to read (a longer one says why in its own text)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pulse_pipeline"
DECLARATIONS = PACKAGE / "defs"
MAX_LINES = 400
# A module longer than MAX_LINES carries this marker with its reason.
LONG_MODULE_REASON = "Longer than 400 lines because"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports included)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_only_the_declarations_folder_imports_dagster() -> None:
    outside = [path for path in PACKAGE.rglob("*.py") if DECLARATIONS not in path.parents]
    assert len(outside) > 20  # the core: sync, db, aws, fx, alerts, ...
    leaks = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in imported_modules(path) if m.split(".")[0].startswith("dagster")
        )
        for path in outside
    }
    assert {path: found for path, found in leaks.items() if found} == {}


def test_the_core_never_imports_the_declarations() -> None:
    """The Dagster-free core is callable from a plain Python test: it never reaches back into
    `pulse_pipeline.defs`."""
    outside = [path for path in PACKAGE.rglob("*.py") if DECLARATIONS not in path.parents]
    back = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in imported_modules(path) if m.startswith("pulse_pipeline.defs")
        )
        for path in outside
    }
    assert {path: found for path, found in back.items() if found} == {}


def test_long_modules_say_why() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
        and LONG_MODULE_REASON not in path.read_text()
    }
    assert long == {}


def test_the_modules_import_each_other_without_a_cycle() -> None:
    """A sync followed from the schedule's tick to the status write-back goes forward through
    the modules: no module imports one that imports it back, however indirectly."""
    modules = {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        ): path
        for path in PACKAGE.rglob("*.py")
    }
    graph = {
        name: {
            target
            for imported in imported_modules(path)
            for target in (imported, *(f"{imported}.{alias}" for alias in _names(path, imported)))
            if target in modules and target != name
        }
        for name, path in modules.items()
    }
    cycles = []
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []


def _names(path: Path, module: str) -> list[str]:
    """The names a file imports from `module` (a submodule may be one of them)."""
    return [
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == module and not node.level
        for alias in node.names
    ]
