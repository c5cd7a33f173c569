"""The co-training runs' arguments: a small run on a tiny random BERT (tests/conftest.py's tiny_bert)."""

SMALL = ["--limit", "160", "--epochs", "2", "-q", "--set", "quantum.n_qubits=2", "--set", "quantum.depth=1",
         "--set", "train.batch_size=16", "--set", "train.checkpoint_every=2", "--set", "embedding.max_length=24"]


def args(tiny_bert, cache, *extra):
    return [*SMALL, "--set", f"embedding.model={tiny_bert}", "--cache-dir", str(cache), *extra]
