"""Pydantic's report of a config that does not validate, as one line: a secret first, else an
unknown key (with the closest valid one), else the first other problem, named by its dotted key.
"""
from __future__ import annotations

import difflib
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

SECRET_KEYS = {"token", "api_key", "apikey", "ibm_token", "password"}

TYPE_NAMES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "float_type": "a number", "float_parsing": "a number",
    "finite_number": "a finite number", "string_type": "a string", "list_type": "a list",
}
NOT_A_MAPPING = {"model_type", "model_attributes_type", "dict_type"}
BOUNDS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
UNKNOWN_KEY = {"extra_forbidden", "invalid_key"}


def first_problem(error: ValidationError, root: type[BaseModel]) -> str:
    """One line for the most telling problem of validating `root` (the Config): a secret, else an
    unknown key, else the first other."""
    problems = error.errors()
    return describe(min(problems, key=lambda p: (not is_secret(p), p["type"] not in UNKNOWN_KEY)), root)


def is_secret(problem: dict) -> bool:
    return problem["type"] in UNKNOWN_KEY and str(problem["loc"][-1]).lower() in SECRET_KEYS


def describe(problem: dict, root: type[BaseModel]) -> str:
    loc, kind, value = problem["loc"], problem["type"], problem.get("input")
    key = dotted(loc)
    if is_secret(problem):
        return (f"config: '{key}' is refused: a token never goes into a config (it would be copied into every "
                f"run dir); set QISKIT_IBM_TOKEN or save a qiskit account")
    if kind in UNKNOWN_KEY:
        return unknown_key(loc, root)
    if kind == "value_error":  # our validators' messages are complete
        return str(problem["ctx"]["error"])
    if kind in BOUNDS:
        return f"config: {key} must be {bound_text(field_at(loc, root))}, not {value}"
    if value is None:
        return f"config: {key} must not be empty"
    if kind in NOT_A_MAPPING:
        return f"config: {key} must be a mapping, not {type(value).__name__}"
    if kind == "literal_error":
        shown = ", ".join("empty" if c is None else str(c) for c in choices(field_at(loc, root).annotation))
        return f"config: {key} must be one of {shown}, not {value!r}"
    if kind in TYPE_NAMES:
        return f"config: {key} must be {TYPE_NAMES[kind]}, not {value!r}"
    return f"config: {key}: {problem['msg']}"


def dotted(loc: tuple) -> str:
    """('data', 'labels', 0) -> 'data.labels[0]'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def unknown_key(loc: tuple, root: type[BaseModel]) -> str:
    known = list(model_at(loc[:-1], root).model_fields)
    prefix = dotted(loc[:-1]) + "." if loc[:-1] else ""
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean '{prefix}{close[0]}'?" if close else f"valid: {', '.join(known)}"
    return f"config: unknown key '{prefix}{loc[-1]}' ({hint})"


def model_at(path: tuple, root: type[BaseModel]) -> type[BaseModel]:
    model = root
    for name in path:
        model = model.model_fields[name].annotation
    return model


def field_at(loc: tuple, root: type[BaseModel]) -> FieldInfo:
    # a list item's problem (data.labels[0]) belongs to the list's field
    names = tuple(part for part in loc if isinstance(part, str))
    return model_at(names[:-1], root).model_fields[names[-1]]


def choices(annotation: Any) -> list:
    """The allowed values of a Literal field, None (shown as `empty`) first when it is optional;
    [] for a field that is not a choice."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return choices(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    allowed = [value for arg in args if arg is not type(None) for value in choices(arg)]
    return [None] + allowed if allowed and type(None) in args else allowed


def bounds(field: FieldInfo) -> dict:
    """{'ge': 1, 'le': 3, ...}: the numeric bounds of a field."""
    found = {}
    for constraint in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            if getattr(constraint, name, None) is not None:
                found[name] = getattr(constraint, name)
    return found


def bound_text(field: FieldInfo) -> str:
    b = bounds(field)
    if "ge" in b and "le" in b:
        return f"{b['ge']} to {b['le']}"
    if "gt" in b and "lt" in b:
        return f"between {b['gt']} and {b['lt']}"
    parts = ([f"at least {b['ge']}"] if "ge" in b else []) + ([f"> {b['gt']}"] if "gt" in b else []) + \
            ([f"at most {b['le']}"] if "le" in b else []) + ([f"< {b['lt']}"] if "lt" in b else [])
    return " and ".join(parts)
