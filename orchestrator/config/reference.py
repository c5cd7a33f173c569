"""The config's reference documents, made from its sections: the JSON Schema editors use
(docs/config.schema.json) and the Markdown table of keys (docs/config.md).

    python -m orchestrator.config --schema      python -m orchestrator.config --table
"""
from __future__ import annotations

import argparse
import json
import typing
from typing import Any, Optional

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orchestrator.config.errors import bound_text, choices
from orchestrator.config.sections import Config

SCHEMA_ID = "urn:hybrid-quantum-orchestrator:config"

def config_json_schema() -> dict:
    """The JSON Schema of a config file (docs/config.schema.json), for editors and other tools."""
    schema = Config.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema, "title": "hybrid-quantum-orchestrator run config",
            "description": "A run config (orchestrate run --config FILE): YAML sections of settings; "
                           "every key is optional and unknown keys are refused."}


def config_reference_table() -> str:
    """Markdown: per section, every key with its default, what it allows and what it means (docs/config.md)."""
    parts = []
    for section, field in Config.model_fields.items():
        parts.append(f"### `{section}`\n\n{field.annotation.__doc__.split(chr(10))[0]}\n")
        parts.append(section_table(field.annotation))
    return "\n".join(parts)


def section_table(model: type[BaseModel]) -> str:
    rows = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for key, field in walk_fields(model):
        cells = (f"`{key}`", default_text(field), allowed_text(field), field.description or "")
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def walk_fields(model: type[BaseModel], prefix: str = "") -> typing.Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from walk_fields(field.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(see meaning)"
    if field.default is None:
        return "empty"
    return f"`{field.default}`" if isinstance(field.default, str) else f"`{json.dumps(field.default)}`"


def allowed_text(field: FieldInfo) -> str:
    if isinstance(field.json_schema_extra, dict) and "allowed" in field.json_schema_extra:
        return str(field.json_schema_extra["allowed"])      # a field of mixed kinds says it in its own words
    allowed = choices(field.annotation)
    if allowed:
        return ", ".join("empty" if c is None else str(c) for c in allowed)
    kind = type_text(field.annotation)
    limits = bound_text(field)
    optional = "empty or " if type(None) in typing.get_args(field.annotation) else ""
    return f"{optional}{kind}{', ' + limits if limits else ''}"


def type_text(annotation: Any) -> str:
    names = {bool: "true/false", int: "integer", float: "number", str: "text", list: "list of text"}
    for candidate in (annotation, *typing.get_args(annotation)):
        base = typing.get_origin(candidate) or candidate
        if base is typing.Annotated:
            base = typing.get_args(candidate)[0]
        if base in names:
            return names[base]
    return str(annotation)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.config", description="the config's reference documents")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--schema", action="store_true", help="print the JSON Schema (docs/config.schema.json)")
    what.add_argument("--table", action="store_true", help="print the Markdown table of keys (docs/config.md)")
    args = parser.parse_args(argv)
    print(json.dumps(config_json_schema(), indent=2) if args.schema else config_reference_table().rstrip("\n"))
