"""What the tests stand on, importable as `tests.support.<module>` (no test file imports another):

    fake_cloud         a stand-in for IBM Quantum's cloud service (`python -m tests.support.fake_cloud ROOT -- ARGS`)
    loopback_cluster   a real multi-node Ray cluster on loopback addresses
    reference_sim      the exact torch simulation everything quantum is checked against
    summary_schema     summary.json against docs/summary.schema.json
    runs               the small run's arguments, kill -9 after a checkpoint, "the same run" checks
    cotraining         the co-training runs' arguments (a tiny random BERT)
    cli                a refusal's one error line
    ibm                the IBM backends' tests: a token never written, a refusal's line among warnings
"""
