"""What a co-trained encoder costs per training step: `python bench/cotrain.py [--device cuda]`.

Anchor, measured in the same run on the same rows: a step of the frozen path (train_layers 0,
the hybrid head on cached vectors, one exact Aer job). Measured: the same step with the top 1
and 2 MiniLM layers trained over their cached layer states, and with the whole encoder trained
on token ids; on a GPU both in float32 and under bfloat16 autocast (train.precision). Each
variant is built by the training loop's own `setup` and stepped as `train_epoch` steps it
(forward with one job, backward, optimizer step), after warm-up steps.

    python bench/cotrain.py                         # the packaged all-MiniLM-L6-v2, on this machine's CPU
    python bench/cotrain.py --model F --random-weights   # F's shape and tokenizer, random weights
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from embeddings.encode import Encoder, EncodeSettings, tokenize_texts  # noqa: E402
from embeddings.models import resolve_model  # noqa: E402
from orchestrator.config import load_config  # noqa: E402
from orchestrator.data.datasets import load_dataset  # noqa: E402
from orchestrator.data.splits import split_dataset  # noqa: E402
from orchestrator.pipeline import Prepared  # noqa: E402
from orchestrator.quantum.model import one_torch_thread  # noqa: E402
from orchestrator.training import loop  # noqa: E402


def random_copy(model_path: str, folder: Path) -> str:
    """The model's config and tokenizer with random weights: its cost, none of its knowledge."""
    import shutil

    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(model_path)).save_pretrained(folder)
    for name in os.listdir(model_path):
        if name.startswith(("tokenizer", "vocab", "special_tokens")) or name == "1_Pooling":
            source = Path(model_path) / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    return str(folder)


def prepared_for(config, dataset, split, device: str) -> Prepared:
    e = config.embedding
    resolved = resolve_model(e.model)
    pooling = resolved.pooling(e.pooling)
    settings = EncodeSettings(max_length=e.max_length, pooling=pooling, device=device, batch_tokens=8192,
                              train_layers=e.train_layers if isinstance(e.train_layers, int) else 0)
    info = {"seconds": 0.0, "path": None, "key": None, "hit": False}
    if e.train_layers == "all":
        return Prepared(dataset=dataset, split=split, content=tokenize_texts(resolved.path, dataset.texts,
                                                                                    e.max_length),
                        embed_info=info)
    return Prepared(dataset=dataset, split=split, content=Encoder(resolved.path, settings).content(dataset.texts),
                    embed_info=info)


def step_seconds(config, prepared: Prepared, steps: int, warmup: int, cuda: bool) -> list[float]:
    with tempfile.TemporaryDirectory() as run_dir:
        training = loop.setup(config, prepared, Path(run_dir), loop.run_encoder(config))
        order = np.random.default_rng(0).permutation(len(training.train.y))
        size, seconds = config.train.batch_size, []
        for step in range(warmup + steps):
            rows = order[(step * size) % (len(order) - size):][:size]
            started = time.perf_counter()
            training.optimizer.zero_grad()
            logits, y = loop.forward(training, training.train, rows)
            training.loss_fn(logits, y).backward()
            training.optimizer.step()
            if cuda:
                torch.cuda.synchronize()
            if step >= warmup:
                seconds.append(time.perf_counter() - started)
        training.runner.backend.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", metavar="FOLDER", help="a model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--random-weights", action="store_true",
                        help="the model's config and tokenizer with random weights (its folder needs no weights)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    model = args.model or resolve_model("all-MiniLM-L6-v2").path
    scratch = tempfile.TemporaryDirectory()
    if args.random_weights:
        model = random_copy(model, Path(scratch.name))
    base = [f"embedding.model={model}", f"embedding.device={args.device}", f"train.batch_size={args.batch_size}",
            "data.name=sms_spam_sample", "quantum.n_qubits=4", "quantum.depth=6"]
    config = load_config(None, base)
    dataset = load_dataset(config.data)
    split = split_dataset(dataset, config.data.split, config.data.duplicates)
    cuda = args.device == "cuda"
    variants = [("frozen head (anchor)", "0", "float32"), ("top 1 layer", "1", "float32"),
                ("top 2 layers", "2", "float32"), ("whole encoder", "all", "float32")]
    if cuda:
        variants += [("top 2 layers, bf16 autocast", "2", "bfloat16"), ("whole encoder, bf16 autocast", "all", "bfloat16")]
    print(f"{args.device} ({torch.cuda.get_device_name() if cuda else f'{os.cpu_count()} cores'}), torch "
          f"{torch.__version__}, {'random' if args.random_weights else 'trained'} MiniLM weights, batch "
          f"{args.batch_size}, 4 qubits depth 6 on exact Aer; median of {args.steps} steps")
    anchor = None
    for name, layers, precision in variants:
        config = load_config(None, base + [f"embedding.train_layers={layers}", f"train.precision={precision}"])
        prepared = prepared_for(config, dataset, split, args.device)
        with one_torch_thread() if layers == "0" else contextlib.nullcontext():   # as train() runs it
            median = statistics.median(step_seconds(config, prepared, args.steps, warmup=3, cuda=cuda))
        anchor = anchor or median
        print(f"  {name:<32} {median * 1000:8.1f} ms/step   {median / anchor:6.2f}x the anchor")


if __name__ == "__main__":
    main()
