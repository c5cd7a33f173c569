"""Config files and overrides: YAML in, a validated Config out, and back.

`--set section.key=value` overrides are parsed as YAML scalars with the same loader as config
files (YAML 1.2 numbers and booleans: `1e-3` is a number, `yes` is text). `derive` is how a
config changes after validation: a copy with some keys set, validated like a file.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from orchestrator.config.errors import first_problem
from orchestrator.config.sections import Config
from orchestrator.core.errors import UserError

BOOL_TAG, FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
# YAML 1.2 floats that YAML 1.1 (PyYAML) leaves as text: an exponent without a dot or a sign (1e-3, 5E+2, 2.5e4)
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class ConfigLoader(yaml.SafeLoader):
    """YAML 1.2 numbers and booleans on PyYAML: `lr: 1e-3` is a number, and only true/false are
    booleans (`labels: [yes, no]` stays text; `drop_empty: yes` is refused, not read as true)."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ConfigLoader.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


class ConfigDumper(yaml.SafeDumper):
    """Quotes text that ConfigLoader would read as a number ('1234e56'), which safe_dump leaves bare."""


ConfigDumper.add_implicit_resolver(FLOAT_TAG, EXPONENT_FLOAT, list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ConfigLoader)


def config_yaml(config: Config) -> str:
    """The config as YAML that load_config reads back as an equal Config (for config.yaml in a run dir)."""
    return yaml.dump(to_dict(config), Dumper=ConfigDumper, sort_keys=False)


def load_config(path: Optional[str] = None, overrides: tuple[str, ...] | list[str] = ()) -> Config:
    """Read a YAML config (or the defaults), apply `key=value` overrides, validate, return it."""
    raw = read_config_file(path) if path else {}
    for item in overrides:
        set_dotted(raw, item)
    return validated(raw)


def derive(config: Config, changes: dict[str, Any]) -> Config:
    """A copy of `config` with the dotted keys of `changes` ({"quantum.backend": "aer_simulator"})
    set to their values, validated as a file is: how a frozen config changes (a run's resolved
    config, a device phase's, a sweep trial's). A bad value is one line, as in a file."""
    raw = to_dict(config)
    for key, value in changes.items():
        node, leaf = section_of(raw, key, f"config key {key!r}")
        node[leaf] = value
    return validated(raw)


def validated(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(first_problem(e, Config)) from None


def read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = parse_yaml(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return raw


def flatten(mapping: dict, prefix: str = "") -> dict:
    """A nested mapping as one level of dotted keys: {"train": {"lr": 0.01}} -> {"train.lr": 0.01}."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(raw: dict, item: str) -> None:
    """Apply one `section.key=value` override to a raw config mapping."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {item!r} must look like section.key=value")
    node, leaf = section_of(raw, key.strip(), f"override {item!r}")
    try:
        node[leaf] = parse_yaml(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"override {item!r}: the value is not valid YAML: {str(e).splitlines()[0]}") from None


def section_of(raw: dict, key: str, what: str) -> tuple[dict, str]:
    """The mapping that holds the dotted `key` in a raw config (sections made as needed), and its last part."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:  # absent, or an empty section (`ray:`)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise UserError(f"{what}: {part} is not a section")
    return node, parts[-1]


def to_dict(config: Config) -> dict:
    """Plain Python values, sections and keys in declaration order (what config.yaml records)."""
    return config.model_dump()
