"""The layers point one way (docs/index.md): the CLI on top, then the pipeline, then builders and clients,
then the core (triton_repo: spec, errors, log, server control, locks). Read from the imports themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("triton_repo", "builders", "clients")


def modules() -> dict[str, set[str]]:
    """Module name -> every module it imports (at any depth: the CLI imports inside functions)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
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


def test_the_layering_test_sees_the_whole_code_base():
    assert {"triton_repo.cli.build", "builders.pipeline", "clients.infer", "triton_repo.spec.model"} <= set(
        MODULES
    )
    assert any(
        _in(i, "builders") for i in MODULES["triton_repo.cli.build"]
    )  # imports in function bodies count


@pytest.mark.parametrize(
    ("rule", "who", "must_not_import"),
    [
        (
            "nothing below the CLI imports it",
            lambda m: not _in(m, "triton_repo.cli", "triton_repo.__main__"),
            ("triton_repo.cli",),
        ),
        (
            "the core imports neither builders nor clients",
            lambda m: _in(m, "triton_repo") and not _in(m, "triton_repo.cli", "triton_repo.__main__"),
            ("builders", "clients"),
        ),
        ("builders never import clients", lambda m: _in(m, "builders"), ("clients",)),
        (
            "only the CLI uses the pipeline",
            lambda m: not _in(m, "triton_repo.cli", "builders.pipeline"),
            ("builders.pipeline",),
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
