"""Every command the README and docs/ show is one that exists: triton-repo commands and options, make
targets, scripts. (The pages themselves are built by `make docs`, mkdocs in strict mode.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTION = re.compile(r"(?<![\w/.=-])(--?[a-zA-Z][\w-]*)")


def shell_commands(page: Path) -> list[tuple[int, str]]:
    """(line number, command) for each command in the page's ```bash blocks; continuation lines (ending in
    a backslash, or indented and starting with '[') are joined to the command they continue."""
    commands: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() in ("```bash", "```sh", "```shell")
            continue
        if not inside or not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line.split(" #", 1)[0].rstrip()  # a trailing comment
        continues = commands and (commands[-1][1].endswith("\\") or re.match(r"\s+\[", line))
        if continues:
            commands[-1] = (commands[-1][0], commands[-1][1].rstrip("\\") + " " + text.strip())
        else:
            commands.append((number, text.strip()))
    return commands


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def check(command: str) -> list[str]:
    """What is wrong with one shell command (empty: nothing)."""
    from triton_repo.cli import cli

    problems = []
    for part in re.split(r"&&|;|\|\|", command):
        words = part.split()
        if not words:
            continue
        program = words[0]
        if program.endswith("triton-repo"):
            name = words[1] if len(words) > 1 and not words[1].startswith("-") else None
            if name is not None and name not in cli.commands:
                problems.append(f"no command 'triton-repo {name}'")
                continue
            params = (cli.commands[name] if name else cli).params
            known = {"--help", "-h", "--version"} | {o for p in params for o in [*p.opts, *p.secondary_opts]}
            problems += [
                f"'triton-repo {name}' has no option {o}" for o in OPTION.findall(part) if o not in known
            ]
        elif program == "make":
            targets = [w for w in shlex.split(part)[1:] if "=" not in w and not w.startswith("-")]
            problems += [f"no make target '{t}'" for t in targets if t not in make_targets()]
        elif program.endswith(("python", "python3")) and words[1:2] and words[1].endswith(".py"):
            problems += [] if (ROOT / words[1]).is_file() else [f"no script {words[1]}"]
    return problems


def test_the_check_finds_what_is_wrong():
    assert check("triton-repo build models/x --target cpu") == []
    assert check("triton-repo bulid models/x") == ["no command 'triton-repo bulid'"]
    assert check("triton-repo build --tagret cpu") == ["'triton-repo build' has no option --tagret"]
    assert check("make build-repo MODELS=models/digits && make serve-gpuu") == ["no make target 'serve-gpuu'"]
    assert check(".venv/bin/python examples/nope.py --url x") == ["no script examples/nope.py"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_shown_exists(page):
    problems = [
        f"{page.name}:{number}: {problem}"
        for number, command in shell_commands(page)
        for problem in check(command)
    ]
    assert problems == []
