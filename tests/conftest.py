"""Shared fixtures: one Ray session for the whole test run (ray.init costs ~4.5 s and ~0.9 GB)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_worker_niceness", "0")  # as workers.cluster does for its local Ray

REPO = Path(__file__).resolve().parents[1]          # this file is tests/conftest.py
SHARED = REPO.parent / "shared"
SMS_PATH = SHARED / "data" / "sms_spam" / "SMSSpamCollection"
SAMPLE_PATH = REPO / "orchestrator" / "datasets" / "sms_spam_sample.tsv"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray runtime shared by every test that needs one; shut down at the end."""
    import ray

    if not ray.is_initialized():
        # 4 logical CPUs on 2 cores: a test can hold a pool of actors while a CLI run joins the same cluster
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, namespace="orchestrator-tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def every_summary_matches_the_schema(tmp_path_factory):
    """After the whole run: every summary.json a run wrote in any test (in a run dir: beside its
    config.yaml) matches docs/summary.schema.json."""
    yield
    from tests.support.summary_schema import assert_valid_summary

    for path in sorted(tmp_path_factory.getbasetemp().rglob("summary.json")):
        if (path.parent / "config.yaml").is_file():
            assert_valid_summary(path)


@pytest.fixture(scope="session")
def sms_path():
    """The full SMS Spam Collection, for the few tests that check facts of all 5,574 messages."""
    if not SMS_PATH.is_file():
        pytest.skip(f"needs the full SMS Spam Collection (5,574 messages), not in this checkout: {SMS_PATH}")
    return SMS_PATH


@pytest.fixture(scope="session")
def sms_sample_path(tmp_path_factory):
    """The collection's first 1,000 messages, packaged with the project (the same rows, the same
    format), under the collection's file name: every test that reads at most 1,000 rows runs in
    any clone."""
    path = tmp_path_factory.mktemp("sms_sample") / "SMSSpamCollection"
    path.write_bytes(SAMPLE_PATH.read_bytes())
    return path


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'") + [
    "free", "call", "now", "win", "prize", "ok", "see", "you", "later", "the", "a", "to", "##s", "##ing", "##ed"]


def make_tiny_bert(folder: Path, seed: int = 0, with_pooler: bool = True) -> Path:
    """A random 2-layer BERT with a real WordPiece tokenizer, saved like a hub model (safetensors)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertModel(config, add_pooling_layer=with_pooler).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
