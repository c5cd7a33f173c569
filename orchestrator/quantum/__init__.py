"""The quantum side of a run, one module a concern:

    ansatz.py       the circuit's blocks by name: encodings, entanglers (pure; the config's choices)
    circuits.py     the dressed circuit template, its observables, the transpile cache
    shift_rule.py   the parameter-shift rule: pure numpy, table in, values + Jacobian out
    gradients.py    the gradient methods (parameter shift, weights only, SPSA, backprop): their
                    tables; what quantum.gradient auto chooses
    statevector.py  the circuit as an exact, batched, differentiable torch statevector (backprop)
    runner.py       the circuit runner: one request -> as few jobs as the limits allow; the
                    Backend protocol; job hooks
    backends/       the backend families (aer, fake, ibm) and `make_runner(config, run_dir)`
    journal.py      the job journal of a remote run: re-attach, never pay twice, the QPU budget
    estimate.py     what a run will submit, before it submits anything
    model.py        HybridHead and QuantumLayer: the torch side of the circuit
"""
