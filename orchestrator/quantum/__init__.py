"""The quantum side of a run, one module a concern:

    circuits.py     the dressed circuit template, its observables, the transpile cache
    shift_rule.py   the parameter-shift rule: pure numpy, table in, values + Jacobian out
    runner.py    one request -> as few jobs as the limits allow; the Backend protocol; job hooks
    backends/       Aer, IBM devices and their fake twins, and `make_runner(config, run_dir)`
    journal.py      the job journal of a remote run: re-attach, never pay twice, the QPU budget
    estimate.py     what a run will submit, before it submits anything
    model.py        HybridHead and QuantumLayer: the torch side of the circuit
"""
