"""deploy/builder/Dockerfile, the build Jobs' image, checked offline against the checkout: it is never built
here (no Docker engine on these machines), so what it copies must exist and what it installs must be what
`make install` installs."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "builder" / "Dockerfile"
VALUES = ROOT / "deploy" / "helm" / "triton-repo" / "values.yaml"
MAKE_VARIABLES = {"$(VENV)": ".venv", "$(SERVE_VENV)": ".venv-serve"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def pip_install(command: str) -> str:
    """`VENV/bin/pip install ...` of one shell command, without leading variables, a comment or --quiet."""
    words = shlex.split(command.split(" #", 1)[0], comments=True)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words.pop(0)
    return " ".join(word for word in words if word != "--quiet")


def makefile_pip_installs(target: str) -> list[str]:
    """The pip install lines of one Makefile recipe, the make variables replaced by their defaults."""
    recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, f"no recipe {target} in the Makefile"
    lines = [line.strip() for line in recipe.group(1).splitlines() if "pip install" in line]
    for variable, value in MAKE_VARIABLES.items():
        lines = [line.replace(variable, value) for line in lines]
    return [pip_install(line) for line in lines]


def dockerfile_pip_installs() -> list[str]:
    commands = [c for kind, rest in instructions() if kind == "RUN" for c in rest.split("&&")]
    return [pip_install(c) for c in commands if "pip install" in c]


def test_the_builder_image_installs_exactly_what_make_install_installs():
    """The same pip lines in the same order per environment (the image installs the project last, after
    the serving environment, so that a code change does not rebuild both environments' layers)."""
    build, serve = makefile_pip_installs("$(BUILD_STAMP)"), makefile_pip_installs("$(SERVE_STAMP)")
    assert build[0] == ".venv/bin/pip install torch==2.13.0"  # the pin, installed first and alone
    assert build[1] == ".venv/bin/pip install -r requirements/build.txt -c requirements/build.lock"
    assert all("--no-deps" in line for line in build[2:] + serve[1:])  # the wheels and the project
    installed = dockerfile_pip_installs()
    assert [line for line in installed if line.startswith(".venv/")] == build
    assert [line for line in installed if line.startswith(".venv-serve/")] == serve
    assert len(installed) == len(build) + len(serve)


def test_every_path_the_builder_image_copies_exists_and_is_in_its_build_context():
    copies = [shlex.split(rest) for kind, rest in instructions() if kind == "COPY"]
    sources = [source for words in copies for source in words[:-1] if not source.startswith("--")]
    assert {"requirements/", "triton_repo/", "models/", ".env", "pyproject.toml"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which the checkout does not have"
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    for source in sources:
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"
    requirements = {line.split()[-1] for line in makefile_pip_installs("$(BUILD_STAMP)") if " -r " in line}
    requirements |= {line.split()[-1] for line in makefile_pip_installs("$(SERVE_STAMP)") if " -r " in line}
    assert all((ROOT / path).is_file() for path in requirements)  # the locks are in requirements/


def test_the_builder_image_runs_triton_repo_as_the_charts_non_root_user():
    found = dict(instructions())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    values = yaml.safe_load(VALUES.read_text())
    assert found["FROM"] == "python:3.11-slim" and project["requires-python"] == ">=3.11"
    assert found["ENTRYPOINT"] == '["triton-repo"]' and "triton-repo" in project["scripts"]
    user, _, group = found["USER"].partition(":")
    assert (int(user), int(group)) == (
        values["podSecurityContext"]["runAsUser"],
        values["podSecurityContext"]["runAsGroup"],
    )
    assert values["build"]["image"]["tag"] == project["version"]
