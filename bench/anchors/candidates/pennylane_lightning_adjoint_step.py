"""Candidate: PennyLane lightning.qubit with diff_method="adjoint" on W1, exact.

The batch goes into the QNode as one broadcast input, as ../pennylane_backprop_step.py does.
lightning.qubit has no native broadcasting: PennyLane's preprocessing splits a broadcast tape
into one tape per sample (broadcast_expand): one QNode call per step, but 2 x batch device
executions (the forward tapes, then one adjoint Jacobian per tape), so the cost grows with the
batch. The torch interface hands the values back as float32 (lightning itself is double).
W_PL_VJP=1 asks for device_vjp=True (adjoint vector-Jacobian products; one execution per sample,
slower here). Prints one JSON line.
"""
import json, math, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from importlib.metadata import version
import torch
import pennylane as qml
import workload as W
import exact

VJP = os.environ.get("W_PL_VJP", "0") == "1"
torch.manual_seed(W.SEED)
torch.set_num_threads(int(os.environ.get("W_THREADS", 1)))
dev = qml.device("lightning.qubit", wires=W.QUBITS)

@qml.qnode(dev, interface="torch", diff_method="adjoint", device_vjp=VJP)
def circuit(inputs, weights):
    for q in range(W.QUBITS):
        qml.Hadamard(q); qml.RY(inputs[..., q], wires=q)
    for d in range(W.DEPTH):
        for q in range(0, W.QUBITS - 1, 2): qml.CNOT([q, q + 1])
        for q in range(1, W.QUBITS - 1, 2): qml.CNOT([q, q + 1])
        for q in range(W.QUBITS): qml.RY(weights[d * W.QUBITS + q], wires=q)
    return [qml.expval(qml.PauliZ(q)) for q in range(W.QUBITS)]

layer = qml.qnn.TorchLayer(circuit, {"weights": W.QUBITS * W.DEPTH},
                           init_method=lambda t: torch.nn.init.normal_(t, std=0.01))
class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(W.FEATURES, W.QUBITS); self.q = layer
        self.post = torch.nn.Linear(W.QUBITS, 2)
    def forward(self, f):
        return self.post(self.q(torch.tanh(self.pre(f)) * math.pi / 2))   # the whole batch broadcast
model = Head()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
X, Y = W.data()
times, execs = [], []
for s in range(W.STEPS + 1):
    xb, yb = X[s * W.BATCH:(s + 1) * W.BATCH], Y[s * W.BATCH:(s + 1) * W.BATCH]
    with qml.Tracker(dev) as tr:
        t0 = time.perf_counter()
        opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(xb), yb); loss.backward(); opt.step()
        dt = time.perf_counter() - t0
    if s: times.append(dt); execs.append(tr.totals.get("executions", 0))
a, w = exact.check_batch(W.QUBITS, W.DEPTH)
vals = torch.stack(circuit(torch.tensor(a), torch.tensor(w)), dim=-1).detach().numpy()
print(json.dumps({"anchor": "pennylane/lightning.qubit/adjoint", "version": qml.__version__,
                  "lightning": version("pennylane_lightning"),
                  "method": "adjoint, broadcast input split per sample by broadcast_expand"
                            + (", device_vjp" if VJP else ""),
                  "torch": torch.__version__, "step_s_median": statistics.median(times),
                  "device_executions_per_step": statistics.median(execs), "steps": W.STEPS,
                  "batch": W.BATCH, "qubits": W.QUBITS, "depth": W.DEPTH, "threads": torch.get_num_threads(),
                  "max_abs_error_vs_exact": exact.error(vals, W.QUBITS, W.DEPTH)}))
