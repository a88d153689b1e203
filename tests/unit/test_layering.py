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


# --- one home per concept ----------------------------------------------------------------------------------

TARGET_HOMES = ("triton_repo.builders.targets", "triton_repo.core.targets")
MAX_PARAMETERS = 8


def _parsed() -> dict[str, ast.Module]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def target_name_branches(tree: ast.AST) -> list[str]:
    """Comparisons with a target's name ("cpu", "gpu"): a decision that belongs to the Target type."""
    from triton_repo.core.targets import NAMES

    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(
            isinstance(side, ast.Constant) and side.value in NAMES for side in [node.left, *node.comparators]
        )
    ]


def test_the_target_check_finds_a_branch_on_a_target_name():
    assert target_name_branches(ast.parse("if target == 'gpu':\n    pass")) == ["target == 'gpu'"]
    assert target_name_branches(ast.parse("if 'cpu' != entry['target']:\n    pass")) != []
    assert target_name_branches(ast.parse("if target.local_server_serves:\n    pass")) == []


def test_no_module_branches_on_a_target_name_outside_the_targets():
    broken = {
        module: found
        for module, tree in _parsed().items()
        if not _in(module, *TARGET_HOMES)
        for found in [target_name_branches(tree)]
        if found
    }
    assert broken == {}, f"branch on the Target (builders/targets.py) instead of its name: {broken}"


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """What a caller passes: every parameter but a method's self/cls."""
    args = node.args
    count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
    count += (args.vararg is not None) + (args.kwarg is not None)
    first = (args.posonlyargs + args.args)[:1]
    return count - (1 if first and first[0].arg in ("self", "cls") else 0)


def test_the_parameter_count_sees_every_kind_of_parameter():
    tree = ast.parse("def f(a, /, b, *c, d, **e): pass\nclass K:\n    def m(self, a): pass")
    counts = [parameters(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert counts == [5, 1]


def test_no_function_of_the_package_takes_more_than_eight_parameters():
    """Over eight, the arguments are a record (a staging request, an option group), not a list."""
    long = sorted(
        f"{module}.{node.name} ({parameters(node)})"
        for module, tree in _parsed().items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameters(node) > MAX_PARAMETERS
    )
    assert long == [], f"functions over {MAX_PARAMETERS} parameters: {long}"


# --- one repository protocol ---------------------------------------------------------------------------------

REPOSITORY_KINDS = frozenset({"ObjectStoreUrl", "StoreTarget", "LocalRepository", "StoreRepository"})
REPOSITORY_HOMES = ("triton_repo.repo", "triton_repo.core.storage")


def repository_kind_checks(tree: ast.AST) -> list[str]:
    """isinstance calls that name a kind of repository: a decision that belongs to the Repository protocol
    (repo/repository.py), whose two implementations answer it."""

    def named(node: ast.AST) -> set[str]:
        return {
            n.id if isinstance(n, ast.Name) else n.attr
            for n in ast.walk(node)
            if isinstance(n, ast.Name | ast.Attribute)
        }

    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and len(node.args) == 2
        and named(node.args[1]) & REPOSITORY_KINDS
    ]


def test_the_repository_check_finds_an_isinstance_on_a_repository_kind():
    source = "if isinstance(where, ObjectStoreUrl):\n    pass"
    assert repository_kind_checks(ast.parse(source)) == ["isinstance(where, ObjectStoreUrl)"]
    assert repository_kind_checks(ast.parse("isinstance(r, Path | publishing.StoreTarget)")) != []
    assert repository_kind_checks(ast.parse("isinstance(r, (Path, LocalRepository))")) != []
    assert repository_kind_checks(ast.parse("isinstance(r, Path)")) == []


def test_only_the_repository_asks_which_kind_of_repository_it_holds():
    broken = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found = repository_kind_checks(ast.parse(path.read_text(), str(path)))
        if found and not _in(module, *REPOSITORY_HOMES):
            broken[module] = found
    assert broken == {}, f"ask the Repository (repo/repository.py), not its kind: {broken}"
