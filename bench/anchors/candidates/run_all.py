"""Runs every candidate and the pennylane_backprop_step.py reference on the five W1 cases, twice,
interleaved (round, then case, then candidate), and writes one JSON line per run with "case" and
"round" added. Usage, from the repository root:

    ANCHORS_PY=/work/anchors-venv/bin/python CANDIDATES_PY=/work/candidates-venv/bin/python \
        python bench/anchors/candidates/run_all.py OUT.jsonl

A run whose first round took more than 60 s a step is not run again (noted in its line).
"""
import json, os, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
A, C = os.environ["ANCHORS_PY"], os.environ["CANDIDATES_PY"]
CANDIDATES = {  # name: (python, script, W_STEPS for the slow cases)
    "pennylane_backprop": (A, HERE.parent / "pennylane_backprop_step.py", 15),
    "pennylane_lightning_adjoint": (A, HERE / "pennylane_lightning_adjoint_step.py", 15),
    "tensorcircuit": (C, HERE / "tensorcircuit_step.py", 15),
    "pyqtorch": (C, HERE / "pyqtorch_step.py", 15),
    "aer_statevector": (A, HERE / "aer_statevector_step.py", 5),
}
CASES = {"W1": dict(W_QUBITS=4, W_BATCH=16), "batch64": dict(W_QUBITS=4, W_BATCH=64),
         "batch256": dict(W_QUBITS=4, W_BATCH=256), "q8": dict(W_QUBITS=8, W_BATCH=16),
         "q12": dict(W_QUBITS=12, W_BATCH=16)}
SLOW = {"batch256", "q12"}
out, too_slow = open(sys.argv[1], "a"), set()
for rnd in (1, 2):
    for case, env in CASES.items():
        for name, (py, script, slow_steps) in CANDIDATES.items():
            row = {"candidate": name, "case": case, "round": rnd}
            if (name, case) in too_slow:
                row["skipped"] = "over 60 s a step in round 1"
            else:
                e = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", W_DEPTH="6",
                         W_STEPS=str(slow_steps if case in SLOW else 15), **{k: str(v) for k, v in env.items()})
                p = subprocess.run([py, str(script)], env=e, cwd=script.parent, capture_output=True, text=True,
                                   timeout=900)
                lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
                if p.returncode or not lines:
                    row["error"] = (p.stderr or p.stdout)[-600:]
                else:
                    row.update(json.loads(lines[-1]))
                    if row["step_s_median"] > 60: too_slow.add((name, case))
            out.write(json.dumps(row) + "\n"); out.flush()
            print(name, case, rnd, row.get("step_s_median", row.get("error", row.get("skipped"))), flush=True)
