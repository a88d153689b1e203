"""Reading models/<name>/model.yaml: YAML and validation errors as one line naming the field, symlinks
that lead out of the models folder refused, model folders found by name."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from triton_repo.core.errors import SpecError
from triton_repo.core.spec.base import NAME_PATTERN, REFERENCE_PATTERN
from triton_repo.core.spec.ensemble import STEP_KINDS
from triton_repo.core.spec.model import LoadedSpec, ModelSpec
from triton_repo.core.spec.tuning import apply_tuning, read_tuning


def _location(loc: tuple) -> str:
    text = ""
    for index, part in enumerate(loc):
        if index and loc[index - 1] == "preprocess" and part in STEP_KINDS:
            continue  # the discriminated union's tag: the YAML has `kind: image`, not an `image:` key
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"function-after", "function-before", "int", "str", "float", "Drop"} or "[" in str(part):
            continue  # pydantic's internal union/validator tags
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


# What a field's pattern means, in the words a person fixes a spec with.
_PATTERNS = {
    NAME_PATTERN: "use lower case letters, digits and '_', starting with a letter, at most 63 characters",
    REFERENCE_PATTERN: "use module:function, a function in a .py file of the model folder (for example model:build)",
}
_UNION_TAGS = {"int", "str", "float", "bool", "list", "dict"}


def _explain(first: dict, same_place: list[dict]) -> str:
    """What is wrong with one value and how to fix it, from a pydantic error (never pydantic's wording)."""
    kind, ctx = first["type"], first.get("ctx") or {}
    if first["loc"] and first["loc"][-1] in _UNION_TAGS and "dims" in first["loc"]:
        return "a dim is a positive whole number or the name of an axis under 'axes'"
    plural = "s" if ctx.get("min_length", ctx.get("max_length", 1)) != 1 else ""
    phrases = {
        "int_type": "give a whole number (for example 4)",
        "int_parsing": "give a whole number (for example 4)",
        "int_from_float": "give a whole number (for example 4)",
        "float_type": "give a number (for example 0.5)",
        "float_parsing": "give a number (for example 0.5)",
        "string_type": "give text (quote it if YAML reads it as a number or true/false)",
        "bool_type": "give true or false",
        "bool_parsing": "give true or false",
        "literal_error": f"use one of {ctx.get('expected', 'the documented values')}",
        "greater_than_equal": f"use {ctx.get('ge')} or more",
        "greater_than": f"use a value above {ctx.get('gt')}",
        "less_than_equal": f"use {ctx.get('le')} or less",
        "less_than": f"use a value below {ctx.get('lt')}",
        "string_pattern_mismatch": _PATTERNS.get(
            ctx.get("pattern", ""), "it does not have the form this field takes (see docs/spec.md)"
        ),
        "string_too_short": "give a non-empty value",
        "too_short": f"give at least {ctx.get('min_length')} item{plural}",
        "too_long": f"give at most {ctx.get('max_length')} item{plural}",
        "dict_type": "give a mapping of fields (key: value)",
        "model_type": "give a mapping of fields (key: value)",
        "model_attributes_type": "give a mapping of fields (key: value)",
        "list_type": "give a list, for example [a, b]",
        "union_tag_invalid": f"use one of {ctx.get('expected_tags', 'the documented kinds')}",
        "union_tag_not_found": f"say which kind it is with '{ctx.get('discriminator', 'kind')}'",
    }
    if kind in phrases:
        return phrases[kind]
    if len(same_place) > 1:  # a union: every member refused the value
        return "it is none of the forms this field takes (see docs/spec.md)"
    return "it is not a value this field takes (see docs/spec.md)"


def _one_line(error: ValidationError) -> str:
    """The first problem as one line in the spec's own terms: where, the value, what to do instead."""
    errors = error.errors(include_url=False)
    first = errors[0]
    where = _location(first["loc"])
    same_place = [e for e in errors if _location(e["loc"]) == where]
    value = first.get("input")
    if first["type"] == "extra_forbidden":
        text = f"{where}: unknown key (check the spelling; see docs/spec.md for every field)"
    elif first["type"] == "missing":
        text = f"{where}: required field is missing"
    elif first["type"].startswith("value_error") or first["type"] == "assertion_error":
        message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        text = message if not first["loc"] else f"{where}: {message}"  # a whole-spec check names its fields
    elif first["type"] == "union_tag_invalid":  # `kind: audio` under a section whose kinds are fixed
        tag = (first.get("ctx") or {}).get("tag")
        text = f"{where}: kind {tag!r} is not allowed: {_explain(first, same_place)}"
    elif isinstance(value, dict | list) and first["type"] not in ("too_short", "too_long"):
        text = f"{where}: {_explain(first, same_place)}"
    else:
        shown = "[]" if value == [] else repr(value)
        text = f"{where}: {shown} is not allowed: {_explain(first, same_place)}"
    others = len({_location(e["loc"]) for e in errors}) - 1
    if others > 0:
        text += f" (and {others} more problem{'s' if others > 1 else ''})"
    return text.replace("\n", "\\n")  # always one line, whatever the YAML held


def parse_spec(data: object, path: Path) -> LoadedSpec:
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of spec fields at the top level, got {type(data).__name__}"
        )
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(f"{path}: {_one_line(error)}") from None
    if spec.name != path.parent.name:
        raise SpecError(
            f"{path}: name: '{spec.name}' must equal the model folder name '{path.parent.name}' "
            "(rename the folder or the model)"
        )
    return LoadedSpec(spec=spec, path=path)


def load_spec(path: Path | str) -> LoadedSpec:
    """Read and validate models/<name>/model.yaml (or a folder holding one), with the folder's tuning.yaml
    (written by `triton-repo tune --apply`) applied over its triton section."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.yaml"
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file (expected models/<name>/model.yaml)")
    _refuse_escaping_symlinks(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML{where}: {problem}") from None
    tuning = read_tuning(path.parent)
    if tuning is not None and isinstance(data, dict):
        data = apply_tuning(data, tuning)  # errors still name model.yaml's fields
    return parse_spec(data, path)


def _refuse_escaping_symlinks(path: Path) -> None:
    """A model folder is what its models folder holds, and model.yaml is in it: symlinks leading out are refused."""
    folder = path.parent
    if folder.is_symlink() and not folder.resolve().is_relative_to(folder.parent.resolve()):
        raise SpecError(
            f"{folder}: the model folder is a symlink to {folder.resolve()}, outside the models folder "
            f"{folder.parent} (copy the model folder into {folder.parent})"
        )
    if not path.resolve().is_relative_to(folder.resolve()):
        raise SpecError(
            f"{path}: a symlink to {path.resolve()}, outside the model folder {folder} "
            "(copy the file into the model folder)"
        )


def find_model(reference: Path | str, models_dir: Path = Path("models")) -> LoadedSpec:
    """A model named on the command line: a folder or model.yaml path, or a bare name under models_dir."""
    path = Path(reference)
    if not path.exists() and not re.fullmatch(NAME_PATTERN, str(reference)):
        raise SpecError(
            f"model '{reference}': not a model folder, and not a model name under {models_dir}/ "
            "(a name is lower case letters, digits and '_'; a folder holds model.yaml)"
        )
    named = models_dir / str(reference) / "model.yaml"
    if not path.exists() and named.is_file():
        path = named
    return load_spec(path)


def discover_specs(models_dir: Path) -> list[Path]:
    """Every models/<name>/model.yaml, sorted by name."""
    if not models_dir.is_dir():
        raise SpecError(
            f"{models_dir}: models folder does not exist (pass models/NAME or create {models_dir})"
        )
    found = sorted(p for p in models_dir.glob("*/model.yaml"))
    if not found:
        raise SpecError(f"{models_dir}: no models/<name>/model.yaml found")
    return found
