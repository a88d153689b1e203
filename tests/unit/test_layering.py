"""One package whose floors read top-down (docs/index.md), read from the imports themselves: a module
imports only from its own part of the house or from a floor below it, and nothing forms a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "triton_repo"

# Top floor first. Parts on the same floor do not import each other.
FLOORS = [
    ("triton_repo.cli", "triton_repo.__main__"),  # parse arguments, call one library function, print
    (
        "triton_repo.builders",
        "triton_repo.clients",
    ),  # the pipeline and its stages; infer, bench, tune, examples
    (
        "triton_repo.repo",
    ),  # config through Triton's schema, writer, templates, manifest, publish, object store
    ("triton_repo.serve", "triton_repo.runtimes"),  # server control; ONNX Runtime and OpenVINO in workers
    ("triton_repo.core", "triton_repo"),  # spec, errors, log, locks, golden, compare, fingerprint, releases
]


def modules() -> dict[str, set[str]]:
    """Module name -> every module it imports (at any depth: the CLI imports inside functions)."""
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
        found[name] = imported
    return found


MODULES = modules()


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def part_of(module: str) -> tuple[int, str] | None:
    """(floor, part) of a module of the package: the longest part that holds it; None outside it."""
    parts = [(floor, part) for floor, names in enumerate(FLOORS) for part in names if _in(module, part)]
    return max(parts, key=lambda found: len(found[1]), default=None)


def test_the_layering_test_sees_the_whole_code_base():
    assert {
        "triton_repo.cli.build",
        "triton_repo.builders.pipeline",
        "triton_repo.clients.infer",
        "triton_repo.core.spec.model",
    } <= set(MODULES)
    assert any(
        _in(i, "triton_repo.builders") for i in MODULES["triton_repo.cli.build"]
    )  # imports in function bodies count


def test_every_module_lives_on_a_floor_and_only_models_sit_beside_the_package():
    """A new part of the house is placed on a floor here before it is used; no second top-level package."""
    loose = sorted(
        m
        for m in MODULES
        if m.count(".") == 1
        and not (ROOT / m.replace(".", "/")).is_dir()
        and m not in ("triton_repo.__main__",)
    )
    assert loose == [], f"modules directly under triton_repo/ belong in one of its floors: {loose}"
    others = sorted(
        p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in (PACKAGE, "tests")
    )
    assert others == [], f"top-level packages besides {PACKAGE}: {others}"


def test_no_import_runs_up_a_floor_or_sideways():
    assert part_of("triton_repo.repo.writer") == (2, "triton_repo.repo")  # the finder places modules
    assert part_of("triton_repo.core.spec") == (4, "triton_repo.core")
    broken = []
    for module, imported in MODULES.items():
        floor, part = part_of(module)
        for target in imported:
            found = part_of(target)
            if found is None or _in(target, part) or found[0] == floor == 0:  # __main__ runs the CLI
                continue
            if found[0] <= floor:
                broken.append(f"{module} imports {target}")
    assert broken == [], f"imports that run up a floor or across one: {broken}"


@pytest.mark.parametrize(
    ("rule", "who", "must_not_import"),
    [
        (
            "nothing below the CLI imports it",
            lambda m: not _in(m, "triton_repo.cli", "triton_repo.__main__"),
            ("triton_repo.cli",),
        ),
        (
            "only the CLI uses the pipeline",
            lambda m: not _in(m, "triton_repo.cli", "triton_repo.builders.pipeline"),
            ("triton_repo.builders.pipeline",),
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_imports_point_one_way(rule, who, must_not_import):
    broken = sorted(
        f"{module} imports {target}"
        for module, imported in MODULES.items()
        if who(module)
        for target in imported
        if _in(target, *must_not_import)
    )
    assert broken == [], f"{rule}: {broken}"


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_even_through_imports_inside_functions():
    graph = {m: {i for i in imported if i in MODULES and i != m} for m, imported in MODULES.items()}
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds
    assert _circles(graph) == []


def test_commands_stay_thin():
    """A command parses, calls one library function and prints: its workflow lives below the CLI."""
    long = {
        path.name: lines
        for path in sorted((ROOT / PACKAGE / "cli").glob("*.py"))
        if (lines := len(path.read_text().splitlines())) >= 150
    }
    assert long == {}, f"CLI files of 150 lines or more (move the workflow into the library): {long}"


def test_every_name_imported_from_the_package_exists_even_inside_functions():
    """A moved name breaks an import inside a function only when that function runs: find it now."""
    import importlib

    wanted = set()
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and _in(node.module or "", PACKAGE):
                wanted |= {(node.module, alias.name, path.name) for alias in node.names}
    missing = []
    for module, name, where in sorted(wanted):
        found = importlib.import_module(module)
        submodule = hasattr(found, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None
        if not hasattr(found, name) and not submodule:
            missing.append(f"{where}: from {module} import {name}")
    assert len(wanted) > 300  # the walk reads every import
    assert missing == []


def test_no_file_of_the_package_is_hidden_by_gitignore():
    """A pattern such as `build/` (meant for the work dir) also hides triton_repo/builders/: a new module
    there would work here and be missing from every clone."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(ROOT)) for p in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == []
