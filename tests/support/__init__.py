"""What the tests stand on, importable as `tests.support.<module>` (no test file imports another):

    ibm_platform       a local IBM Quantum Platform over HTTP for the real qiskit-ibm-runtime client
                       (`python -m tests.support.ibm_platform --port P --plan open|paid --state DIR`)
    loopback_cluster   a real multi-node Ray cluster on loopback addresses
    reference_sim      the exact torch simulation everything quantum is checked against
    summary_schema     summary.json against docs/summary.schema.json
    runs               the small run's arguments, kill -9 after a checkpoint, "the same run" checks
    cotraining         the co-training runs' arguments (a tiny random BERT)
    cli                a refusal's one error line
    ibm                the IBM backends' tests: a token never written, a refusal's line among warnings
"""
