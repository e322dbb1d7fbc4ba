"""Problems with a model folder (or a configuration file), in plain words: `file: field: problem — fix`.

Model authors read these messages, not Python tracebacks: every problem names the file, the field (dotted path,
list positions in brackets), what is wrong and what to do. Pydantic's and PyYAML's own wording ("Field required
[type=missing, input_value=…]") is translated here so it never reaches the author.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

DOCS = "docs/model-authoring.md"
PLACEHOLDER = "<fill in"  # the marker `cds-onnx models new` writes where the author has to write something
PLACEHOLDER_PROBLEM = "still holds the skeleton's placeholder"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file, and how to fix it."""

    file: Path
    field: str  # dotted path in the file ("card.summary", "population[0].feature"); "" for the whole file
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{shown_path(self.file)}: {self.field}: " if self.field else f"{shown_path(self.file)}: "
        return f"{where}{self.problem} — {self.fix}"


def shown_path(path: Path) -> str:
    """A path as an author types it: relative to the working directory when inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def field_path(loc: Sequence[Any]) -> str:
    """('population', 0, 'feature') -> 'population[0].feature'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    """Parse a YAML file; a syntax error becomes a problem with its line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(path, "", "file not found",
                              f"create it (see {DOCS}, or start with `cds-onnx models new`)")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(path, "", f"cannot be read ({exc})", "make it a readable UTF-8 text file")]
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        what = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context = getattr(exc, "context", None)
        if context:
            what += f" ({' '.join(str(context).split())})"
        return None, [Problem(path, where, f"not valid YAML: {what}",
                              "fix the YAML there (indentation, a missing ':', an unclosed quote or bracket)")]


def placeholder_problems(path: Path, doc: Any, loc: tuple[Any, ...] = ()) -> list[Problem]:
    """Every value that still holds the skeleton's `<fill in …>` marker."""
    found: list[Problem] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += placeholder_problems(path, value, (*loc, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += placeholder_problems(path, value, (*loc, i))
    elif isinstance(doc, str) and PLACEHOLDER in doc:
        found.append(Problem(path, field_path(loc), PLACEHOLDER_PROBLEM,
                             "write the real value (the comment above it says what belongs there)"))
    return found


def pydantic_problems(path: Path, exc: ValidationError, model: type[BaseModel], prefix: Sequence[Any] = ()
                      ) -> list[Problem]:
    """Every error of a validation, each in plain words with a fix."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        found = getattr((err.get("ctx") or {}).get("error"), "found", None)
        if err["type"] == "value_error" and found:  # a model's own cross-field checks, each with its field
            base = field_path(loc)
            problems += [Problem(path, f"{base}.{field}" if base else field, problem, fix)
                         for field, problem, fix in found]
            continue
        problem, fix = plain_error(err, model)
        problems.append(Problem(path, field_path(loc) or "(top level)", problem, fix))
    return problems


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The field names allowed where `loc` points (None when the place is not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if isinstance(part, int) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (tuple, list) and isinstance(part, int):
            args = [a for a in typing.get_args(current) if a is not Ellipsis]
            current = args[0] if args else Any
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _expected_list(text: str) -> str:
    """"'a', 'b' or 'c'" -> "a, b, c"."""
    return text.replace("'", "").replace(" or ", ", ")


_TYPE_WORDS = {
    "float_parsing": "a number", "float_type": "a number",
    "int_parsing": "a whole number", "int_type": "a whole number",
    "int_from_float": "a whole number", "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "dict_type": "a mapping (key: value lines)", "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)", "tuple_type": "a list", "list_type": "a list",
}


def plain_error(err: dict[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    """(problem, fix) for one pydantic error."""
    kind, loc, ctx = err["type"], tuple(err["loc"]), err.get("ctx") or {}
    value = err.get("input")
    if kind == "missing":
        return "missing", f"add it (see {DOCS})"
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        allowed = _fields_at(model, loc[:-1]) or []
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            return f"'{name}' is not a known field", f"did you mean '{close[0]}'?"
        if allowed:
            return f"'{name}' is not a known field", f"remove it, or use one of {', '.join(allowed)}"
        return f"'{name}' is not a known field", "remove it or fix its spelling"
    if kind in ("literal_error", "enum"):
        return f"{_shown(value)} is not allowed", f"use one of {_expected_list(str(ctx.get('expected', '')))}"
    if kind in _TYPE_WORDS:
        return f"{_shown(value)} is not {_TYPE_WORDS[kind]}", f"write {_TYPE_WORDS[kind]} here"
    if kind == "string_too_long":
        return f"is {len(str(value))} characters long", f"shorten it to at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return "is empty", "write a value"
    if kind == "string_pattern_mismatch":
        field = str(loc[-1]) if loc else ""
        if field == "id":
            return f"{_shown(value)} is not a model id", "use 2–63 lowercase letters, digits and hyphens, e.g. ldl-risk"
        if field == "version":
            return f"{_shown(value)} is not a version", "use letters, digits, '.', '+' or '-', e.g. \"1.0.0\""
        return f"{_shown(value)} does not have the required form", f"match the pattern {ctx.get('pattern')}"
    if kind in ("too_short", "too_long"):
        expected = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        if loc and loc[-1] == "range":
            return f"{_shown(value)} is not a [low, high] pair", "write two numbers, e.g. [40, 79]"
        return f"has {ctx.get('actual_length')} items", f"give {'at least' if kind == 'too_short' else 'at most'} " \
                                                         f"{expected}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than",
                 "less_than_equal": "at most"}[kind]
        bound = next(iter(ctx.values()), "")
        return f"{_shown(value)} is out of bounds", f"make it {words} {bound}"
    if kind == "value_error":
        message = str(ctx.get("error") or err["msg"]).removeprefix("Value error, ")
        return message, f"correct it (see {DOCS})"
    if kind == "assertion_error":
        return str(err["msg"]).removeprefix("Assertion failed, "), f"correct it (see {DOCS})"
    return str(err["msg"]), f"correct it (see {DOCS})"


def join_problems(problems: Iterable[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def yaml_model_problems(path: Path, model: type[BaseModel], not_mapping: tuple[str, str]
                        ) -> tuple[Any, list[Problem]]:
    """(model instance or None, every problem of a YAML file validated as `model`): syntax, skeleton markers, fields
    and cross-field checks. `not_mapping` is the (problem, fix) when the file is not a mapping at all.

    The instance is given whenever the fields validate, even with placeholder problems, so that other files can be
    checked against it in the same run; it must not be served unless the problem list is empty."""
    doc, problems = read_yaml(path)
    if problems:
        return None, problems
    if not isinstance(doc, dict):
        return None, [Problem(path, "", *not_mapping)]
    problems = placeholder_problems(path, doc)
    marked = {p.field for p in problems}
    try:
        return model.model_validate(doc), problems
    except ValidationError as exc:
        return None, problems + [p for p in pydantic_problems(path, exc, model) if p.field not in marked]


def manifest_problems(path: Path) -> tuple[Any, list[Problem]]:
    """(Manifest or None, every problem of the file): syntax, placeholders, fields, cross-field checks."""
    from inference.manifest import Manifest

    return yaml_model_problems(path, Manifest, ("is not a mapping of manifest fields",
                                                f"write `id: …`, `version: …` and the other fields (see {DOCS})"))
