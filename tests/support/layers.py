"""The house's layers, lowest first (tests/unit/test_architecture.py checks the source against
them; docs/layers.svg draws them). A module may import its own layer and the layers below."""

LAYERS = [
    ("orchestrator.core",),                                   # errors, atomic files, log lines: imports nothing
    # the pure parts whose names are the config's choices: gradient methods and the shift rule,
    # the circuit's blocks, the data file readers (numpy and the standard library only)
    ("orchestrator.quantum.shift_rule", "orchestrator.quantum.gradients", "orchestrator.quantum.ansatz",
     "orchestrator.data.readers"),
    ("embeddings",),                                          # encoders, the vector cache, the embedding stage
    ("workers",),                                             # Ray: the cluster, the actors and their pools
    ("orchestrator.config", "orchestrator.data", "orchestrator.run_dir"),   # the typed config; datasets and splits; RunDir
    ("orchestrator.quantum",),                                # circuit, shift rule, runner, backends, journal
    ("orchestrator.training",),                               # the loop, its state, baselines, report
    ("orchestrator.pipeline", "orchestrator.runs", "orchestrator.inference", "orchestrator.sweep"),   # what the commands share
    ("orchestrator.cli", "orchestrator"),                     # parsing; the package itself
]
