"""Typed, validated run configuration, on pydantic: a module a concern.

    sections.py    the sections (pydantic models): what every key means, allows and defaults to
    yaml_io.py     config files and `--set` overrides in, config.yaml out; `derive`, a changed copy
    errors.py      pydantic's report as one line naming the key ("did you mean ...?")
    reference.py   the JSON Schema (docs/config.schema.json) and the table of keys (docs/config.md):
                   `python -m orchestrator.config --schema | --table`

Every key is checked: a typo ("max_lenght") names the closest valid key, never a silently
ignored setting; whatever is wrong, the user sees one line (a UserError), never pydantic's report.
A validated config is frozen. What a run derives from it (the resolved config it records, a
device phase's, a sweep trial's) is a new config from `derive(config, {"section.key": value})`,
checked as a file is.
"""
from embeddings.config import DEFAULT_MODEL, default_cache_dir
from orchestrator.core.backend_names import AER_SIMULATOR
from orchestrator.config.errors import SECRET_KEYS
from orchestrator.config.reference import config_json_schema, config_reference_table
from orchestrator.config.sections import (RETIRED_CHANNEL, RETIRED_CHANNEL_TEXT, SELECTION_METRICS,
                                          Config, DataConfig, EmbeddingConfig, HardwareConfig, QuantumConfig,
                                          RayConfig, RuntimeConfig, SplitConfig, TrainConfig)
from orchestrator.config.yaml_io import config_yaml, derive, flatten, load_config, parse_yaml, set_dotted, to_dict

__all__ = ["Config", "DataConfig", "SplitConfig", "EmbeddingConfig", "RayConfig", "QuantumConfig", "RuntimeConfig",
           "TrainConfig", "HardwareConfig", "load_config", "derive", "set_dotted", "flatten", "to_dict", "parse_yaml",
           "config_yaml", "default_cache_dir", "DEFAULT_MODEL", "AER_SIMULATOR", "RETIRED_CHANNEL",
           "RETIRED_CHANNEL_TEXT", "SELECTION_METRICS", "SECRET_KEYS", "config_json_schema", "config_reference_table"]
