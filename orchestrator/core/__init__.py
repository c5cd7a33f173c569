"""The foundation every package of the project stands on: errors and exit codes, atomic file
writing, OS locks, Pauli strings, log lines.

It imports nothing else of the project, so `embeddings`, `workers` and the rest of
`orchestrator` can all use it without an import circle (tests/test_architecture.py checks).
"""
