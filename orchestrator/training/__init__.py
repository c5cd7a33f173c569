"""Training a hybrid head on cached vectors:

    loop.py         the run, top to bottom: setup, epochs, best model, test, baselines, report
    state.py        TrainState and the files that keep it (checkpoint.pt, best.pt)
    features.py     Standardiser (fit on the train split, apply anywhere) and class weights
    baselines.py    logistic regression and the classical head on the same vectors
    metrics.py      accuracy, F1, confusion: pure functions
    report.py       summary.json, plots, the table `orchestrate run` prints
"""
