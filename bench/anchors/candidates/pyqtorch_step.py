"""Candidate: pyqtorch on W1: one batched state ([2]*Q + [batch]) through the circuit, exact.

W_PYQ_METHOD=ad (default, the fastest seen): one pyq.run of the batch, then <Z_q> from
pyq.Observable(Z(q)).expectation on that state, torch autograd through it all.
W_PYQ_METHOD=adjoint: pyq.expectation(..., diff_mode=DiffMode.ADJOINT), one call per <Z_q>
(an Observable gives one expectation, so Q calls, each its own forward and adjoint pass).
Inputs are per-sample values of shape (batch,), the weights 0-dim values shared by the batch.
Prints one JSON line, like ../pennylane_backprop_step.py.
"""
import json, math, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from importlib.metadata import version
import torch
import pyqtorch as pyq
from pyqtorch.utils import DiffMode
import workload as W
import exact

METHOD = os.environ.get("W_PYQ_METHOD", "ad")
torch.manual_seed(W.SEED)
torch.set_num_threads(int(os.environ.get("W_THREADS", 1)))
ops = []
for q in range(W.QUBITS):
    ops += [pyq.H(q), pyq.RY(q, f"x{q}")]
for d in range(W.DEPTH):
    ops += [pyq.CNOT(q, q + 1) for q in range(0, W.QUBITS - 1, 2)]
    ops += [pyq.CNOT(q, q + 1) for q in range(1, W.QUBITS - 1, 2)]
    ops += [pyq.RY(q, f"t{d * W.QUBITS + q}") for q in range(W.QUBITS)]
circ = pyq.QuantumCircuit(W.QUBITS, ops)
obs = [pyq.Observable(pyq.Z(q)) for q in range(W.QUBITS)]

def expvals(inputs, weights):                   # inputs (B, Q), weights (Q*D,) -> (B, Q)
    values = {f"x{q}": inputs[:, q] for q in range(W.QUBITS)}
    values.update({f"t{i}": weights[i] for i in range(W.QUBITS * W.DEPTH)})
    state = circ.init_state(batch_size=inputs.shape[0])
    if METHOD == "adjoint":
        return torch.stack([pyq.expectation(circ, state, values, o, diff_mode=DiffMode.ADJOINT)
                            for o in obs], dim=-1)
    state = circ.run(state, values)
    return torch.stack([o.expectation(state) for o in obs], dim=-1)

class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(W.FEATURES, W.QUBITS)
        self.theta = torch.nn.Parameter(0.01 * torch.randn(W.QUBITS * W.DEPTH))
        self.post = torch.nn.Linear(W.QUBITS, 2)
    def forward(self, f):
        q = expvals(torch.tanh(self.pre(f)) * math.pi / 2, self.theta)   # the whole batch at once
        return self.post(q.to(torch.float32))
model = Head()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
X, Y = W.data()
times = []
for s in range(W.STEPS + 1):
    xb, yb = X[s * W.BATCH:(s + 1) * W.BATCH], Y[s * W.BATCH:(s + 1) * W.BATCH]
    t0 = time.perf_counter()
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(xb), yb); loss.backward(); opt.step()
    if s: times.append(time.perf_counter() - t0)
a, w = exact.check_batch(W.QUBITS, W.DEPTH)
with torch.no_grad():
    vals = expvals(torch.tensor(a), torch.tensor(w)).numpy()
print(json.dumps({"anchor": "pyqtorch", "method": f"batched state, {METHOD}", "version": version("pyqtorch"),
                  "torch": torch.__version__, "step_s_median": statistics.median(times), "steps": W.STEPS,
                  "batch": W.BATCH, "qubits": W.QUBITS, "depth": W.DEPTH, "threads": torch.get_num_threads(),
                  "max_abs_error_vs_exact": exact.error(vals, W.QUBITS, W.DEPTH)}))
