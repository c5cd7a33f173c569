"""Candidate: qiskit-aer's own statevector simulator on W1, one Aer run per training step.

AerSimulator(method="statevector") with save_expectation_value(Z_q) on every qubit and the batch
as parameter_binds of one circuit: "forward_s_median" is that run for the batch alone. Aer has no
autodiff, and the installed qiskit-machine-learning (0.9.1) has no reverse-mode gradient
(ReverseEstimatorGradient stayed in the retired qiskit-algorithms), so the step takes the exact
two-term parameter-shift rule through the SAME single Aer run: per sample the forward point and
+-pi/2 on every input and every weight, B * (1 + 2 * (Q + Q*D)) parameter sets, wrapped in a
torch.autograd.Function whose backward contracts the Jacobian. Aer threads = W_THREADS.
Prints one JSON line, like ../pennylane_backprop_step.py.
"""
import json, math, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch
import qiskit, qiskit_aer
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
import workload as W
import exact

torch.manual_seed(W.SEED)
THREADS = int(os.environ.get("W_THREADS", 1))
torch.set_num_threads(THREADS)
Q, P = W.QUBITS, W.QUBITS * W.DEPTH
x = ParameterVector("x", Q); t = ParameterVector("t", P)
qc = QuantumCircuit(Q)
for q in range(Q):
    qc.h(q); qc.ry(x[q], q)
for d in range(W.DEPTH):
    for q in range(0, Q - 1, 2): qc.cx(q, q + 1)
    for q in range(1, Q - 1, 2): qc.cx(q, q + 1)
    for q in range(Q): qc.ry(t[d * Q + q], q)
for q in range(Q):
    qc.save_expectation_value(SparsePauliOp("Z"), [q], label=f"z{q}")
sim = AerSimulator(method="statevector", max_parallel_threads=THREADS)
tqc = transpile(qc, sim)
PARAMS = list(x) + list(t)

def aer_expvals(rows):                          # rows (N, Q+P) -> (N, Q), ONE Aer run
    res = sim.run(tqc, parameter_binds=[{p: rows[:, i] for i, p in enumerate(PARAMS)}]).result()
    return np.array([[r.data.to_dict()[f"z{q}"] for q in range(Q)] for r in res.results])

SHIFT = np.concatenate([np.zeros((1, Q + P)), np.pi / 2 * np.eye(Q + P), -np.pi / 2 * np.eye(Q + P)])
class AerShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, weights):
        base = np.hstack([inputs.detach().double().numpy(), np.tile(weights.detach().double().numpy(), (len(inputs), 1))])
        E = aer_expvals((base[:, None, :] + SHIFT[None]).reshape(-1, Q + P)).reshape(len(inputs), -1, Q)
        ctx.jac = torch.from_numpy((E[:, 1:1 + Q + P] - E[:, 1 + Q + P:]) / 2)      # (B, Q+P, Q)
        return torch.from_numpy(E[:, 0]).to(inputs.dtype)
    @staticmethod
    def backward(ctx, g):
        gi = torch.einsum("bjq,bq->bj", ctx.jac, g.double())
        return gi[:, :Q].to(g.dtype), gi[:, Q:].sum(0).to(g.dtype)

class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(W.FEATURES, Q)
        self.theta = torch.nn.Parameter(0.01 * torch.randn(P))
        self.post = torch.nn.Linear(Q, 2)
    def forward(self, f):
        return self.post(AerShift.apply(torch.tanh(self.pre(f)) * math.pi / 2, self.theta))
model = Head()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
X, Y = W.data()
times, fwd = [], []
for s in range(W.STEPS + 1):
    xb, yb = X[s * W.BATCH:(s + 1) * W.BATCH], Y[s * W.BATCH:(s + 1) * W.BATCH]
    t0 = time.perf_counter()
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(xb), yb); loss.backward(); opt.step()
    if s: times.append(time.perf_counter() - t0)
    with torch.no_grad():                       # the forward values of the batch alone, one Aer run
        rows = np.hstack([(torch.tanh(model.pre(xb)) * math.pi / 2).double().numpy(),
                          np.tile(model.theta.double().numpy(), (W.BATCH, 1))])
    t0 = time.perf_counter(); aer_expvals(rows)
    if s: fwd.append(time.perf_counter() - t0)
a, w = exact.check_batch(Q, W.DEPTH)
vals = aer_expvals(np.hstack([a, np.tile(w, (len(a), 1))]))
print(json.dumps({"anchor": "qiskit-aer/statevector", "version": qiskit_aer.__version__, "qiskit": qiskit.__version__,
                  "method": "AerSimulator statevector, parameter_binds, param-shift Jacobian in the same single run",
                  "torch": torch.__version__, "step_s_median": statistics.median(times),
                  "forward_s_median": statistics.median(fwd), "aer_runs_per_step": 1,
                  "parameter_sets_per_step": W.BATCH * len(SHIFT), "steps": W.STEPS,
                  "batch": W.BATCH, "qubits": Q, "depth": W.DEPTH, "threads": THREADS,
                  "max_abs_error_vs_exact": exact.error(vals, Q, W.DEPTH)}))
