"""The hybrid head: Linear(F -> Q), tanh * pi/2, the quantum layer, Linear(Q -> C).

On an exact simulator with `backprop` (gradients.py) the quantum layer is the runner's
differentiable statevector: torch's autograd differentiates it like any other layer. Otherwise:
`QuantumLayer` is a torch.autograd.Function. Its forward sends ONE request to the runner:
in training (grad enabled and something to differentiate) it asks for values and the full
parameter-shift Jacobian, and keeps the Jacobian; otherwise it asks for values only, which
submits the unshifted rows alone. Its backward is a local vector-Jacobian product with that
Jacobian, so a training step costs one request (one job unless a job-size limit splits it).
The quantum part runs in float64; its output is cast back to the input's dtype.

Threads: the classical layers are tiny, so torch gains nothing from several intra-op threads,
while their spinning OpenMP workers take cores from the simulator. On the 2-core reference
machine a W1 step took 78 ms with torch.set_num_threads(1) and 160 ms with 2; a training loop
on a local simulator should run with one torch thread.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

from orchestrator.quantum import shift_rule
from orchestrator.quantum.circuits import QuantumSpec
from orchestrator.quantum.runner import CircuitRunner


class QuantumLayer(torch.autograd.Function):
    """<Z_i> of the circuit for angles (batch, Q) and weights (n_weights,) -> (batch, Q)."""

    @staticmethod
    def forward(ctx, angles: torch.Tensor, weights: torch.Tensor,
                runner: CircuitRunner, need_jacobian: bool) -> torch.Tensor:
        inputs = angles.detach().cpu().numpy().astype(np.float64, copy=False)
        theta = weights.detach().cpu().numpy().astype(np.float64, copy=False)
        if need_jacobian:
            result = runner.values_and_jacobian(inputs, theta)
            values = result.values
            ctx.jacobian = result.jacobian
        else:
            values = runner.values(inputs, theta)
            ctx.jacobian = None
        ctx.n_inputs = angles.shape[1]
        ctx.device, ctx.angle_dtype, ctx.weight_dtype = angles.device, angles.dtype, weights.dtype
        return torch.from_numpy(values).to(device=angles.device, dtype=angles.dtype)

    @staticmethod
    def backward(ctx, grad_values: torch.Tensor):
        if ctx.jacobian is None:
            raise RuntimeError("QuantumLayer ran without a Jacobian (evaluation mode); "
                               "call it with gradients enabled to train")
        grad_inputs, grad_weights = shift_rule.vector_jacobian_product(
            grad_values.detach().cpu().numpy().astype(np.float64), ctx.jacobian, ctx.n_inputs)
        return (torch.from_numpy(grad_inputs).to(device=ctx.device, dtype=ctx.angle_dtype),
                torch.from_numpy(grad_weights).to(device=ctx.device, dtype=ctx.weight_dtype),
                None, None)


def quantum_layer(angles: torch.Tensor, weights: torch.Tensor,
                  runner: CircuitRunner) -> torch.Tensor:
    """Apply the circuit: the runner's differentiable statevector (backprop), or QuantumLayer,
    asking for the Jacobian only when autograd will need it."""
    if runner.gradient.differentiable:
        return runner.differentiable_values(angles, weights)
    need_jacobian = torch.is_grad_enabled() and (angles.requires_grad or weights.requires_grad)
    return QuantumLayer.apply(angles, weights, runner, need_jacobian)


class HybridHead(nn.Module):
    """Linear(F -> Q) -> tanh * pi/2 -> QuantumLayer -> Linear(Q -> C): a torch.nn.Module.

    It drops into any model and training loop: its input is (batch, F) float features (standardise
    them: the pre-net's tanh saturates on large inputs), its output (batch, C) logits for
    `nn.CrossEntropyLoss`; `loss.backward()` reaches the pre-net, the circuit's weights
    (`quantum_weights`, float64) and the post-net, by autograd's statevector on an exact simulator
    or one parameter-shift job per forward pass elsewhere. Build it on a backend in one call:

        head = HybridHead.on_backend(n_features=384, n_classes=2, backend="aer_simulator", n_qubits=4, depth=2)
        logits = head(features)            # features: torch.float32 (batch, 384)

    The constructor takes a ready CircuitRunner (orchestrator.quantum.backends.make_runner(config)).
    """

    def __init__(self, n_features: int, n_classes: int, runner: CircuitRunner,
                 weight_init_std: float = 0.01) -> None:
        super().__init__()
        spec = runner.template.spec
        self.runner = runner
        self.pre = nn.Linear(n_features, spec.n_qubits)
        self.quantum_weights = nn.Parameter(weight_init_std * torch.randn(spec.n_weights, dtype=torch.float64))
        self.post = nn.Linear(spec.n_observables, n_classes)

    @classmethod
    def on_backend(cls, n_features: int, n_classes: int, backend: str = "aer_simulator", n_qubits: int = 4,
                   depth: int = 6, seed: int = 0, weight_init_std: float = 0.01, **quantum_keys) -> "HybridHead":
        """A head whose circuit runs on `backend` (aer_simulator, fake_<device>, ibm_<device>): the
        config's quantum section from these arguments and `quantum_keys` (any other key of it:
        encoding, entangler, observables, shots, gradient, ...), checked as a config file is (a bad
        name or value is an orchestrator.UserError), then the circuit runner. `seed` seeds the
        gradient method (SPSA's draws); seed torch yourself for the initial weights. Nothing runs
        until the first forward pass; on a device, every forward pass is a job (no job journal)."""
        from orchestrator.config import derive, load_config
        from orchestrator.quantum.backends import check_backend, make_runner

        changes = {"quantum.backend": backend, "quantum.n_qubits": n_qubits, "quantum.depth": depth,
                   "train.seed": seed, **{f"quantum.{key}": value for key, value in quantum_keys.items()}}
        config = derive(load_config(), changes)
        check_backend(config)
        return cls(n_features, n_classes, make_runner(config), weight_init_std=weight_init_std)

    @property
    def spec(self) -> QuantumSpec:
        return self.runner.template.spec

    def angles(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre(features)) * (math.pi / 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        angles = self.angles(features)
        expectations = quantum_layer(angles.double(), self.quantum_weights, self.runner)
        return self.post(expectations.to(features.dtype))

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of standardised features (what `Features.batch(rows)` gives)."""
        return self(batch)

    def split_logits(self, split) -> torch.Tensor:
        """Logits of a whole split (anything with `batch(rows)` and a length) in one values-only
        request; call it without gradients."""
        return self(split.batch(np.arange(len(split))))


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with one torch thread (see the module doc), then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
