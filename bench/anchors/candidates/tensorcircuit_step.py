"""Candidate: TensorCircuit-NG with its pytorch backend on W1, exact statevector, torch autograd.

The circuit is written for one sample and batched by the library: tc.TorchLayer with use_vmap=True
(backend.vmap = torch.vmap) and use_interface=False (already torch, nothing to convert).
W_TC_METHOD=vmap (default, the fastest seen) | compile (the same, torch.compile'd through
K.jit(jit_compile=True)) | loop (no vmap, one sample at a time). W_TC_DTYPE=complex64 (library
default) | complex128. Prints one JSON line, like ../pennylane_backprop_step.py.
"""
import json, math, os, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
import tensorcircuit as tc
import workload as W
import exact

METHOD = os.environ.get("W_TC_METHOD", "vmap")
DTYPE = os.environ.get("W_TC_DTYPE", "complex64")
K = tc.set_backend("pytorch"); tc.set_dtype(DTYPE)
torch.manual_seed(W.SEED)
torch.set_num_threads(int(os.environ.get("W_THREADS", 1)))
RDT = torch.float32 if DTYPE == "complex64" else torch.float64

def circuit(inputs, weights):                  # one sample: inputs (Q,), weights (Q*D,)
    c = tc.Circuit(W.QUBITS)
    for q in range(W.QUBITS):
        c.h(q); c.ry(q, theta=inputs[q])
    for d in range(W.DEPTH):
        for q in range(0, W.QUBITS - 1, 2): c.cnot(q, q + 1)
        for q in range(1, W.QUBITS - 1, 2): c.cnot(q, q + 1)
        for q in range(W.QUBITS): c.ry(q, theta=weights[d * W.QUBITS + q])
    return K.real(K.stack([c.expectation_ps(z=[q]) for q in range(W.QUBITS)]))

if METHOD == "loop":
    f = lambda x, w: torch.stack([circuit(row, w) for row in x])
else:
    f = K.vmap(circuit, vectorized_argnums=0)
    if METHOD == "compile":
        f = K.jit(f, jit_compile=True)
layer = tc.TorchLayer(f, [W.QUBITS * W.DEPTH], use_vmap=False, use_interface=False,
                      initializer=lambda s: 0.01 * torch.randn(s, dtype=RDT))
class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = torch.nn.Linear(W.FEATURES, W.QUBITS, dtype=RDT); self.q = layer
        self.post = torch.nn.Linear(W.QUBITS, 2, dtype=RDT)
    def forward(self, feats):
        return self.post(self.q(torch.tanh(self.pre(feats)) * math.pi / 2))   # the whole batch at once
model = Head()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
X, Y = W.data(); X = X.to(RDT)
times = []
for s in range(W.STEPS + 1):
    xb, yb = X[s * W.BATCH:(s + 1) * W.BATCH], Y[s * W.BATCH:(s + 1) * W.BATCH]
    t0 = time.perf_counter()
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(xb), yb); loss.backward(); opt.step()
    if s: times.append(time.perf_counter() - t0)
a, w = exact.check_batch(W.QUBITS, W.DEPTH)
with torch.no_grad():
    vals = f(torch.tensor(a, dtype=RDT), torch.tensor(w, dtype=RDT)).numpy()
print(json.dumps({"anchor": "tensorcircuit-ng/pytorch", "method": f"TorchLayer + {METHOD}, {DTYPE}, autograd",
                  "version": tc.__version__, "torch": torch.__version__,
                  "step_s_median": statistics.median(times), "steps": W.STEPS,
                  "batch": W.BATCH, "qubits": W.QUBITS, "depth": W.DEPTH, "threads": torch.get_num_threads(),
                  "max_abs_error_vs_exact": exact.error(vals, W.QUBITS, W.DEPTH)}))
