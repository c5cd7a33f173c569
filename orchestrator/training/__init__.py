"""Training a hybrid head, on cached vectors or behind a co-trained encoder:

    loop.py         the run, top to bottom: setup, epochs, best model, test, baselines, report
    model.py        the model seam: run_encoder (frozen | co-trained), SplitInputs, build_model
    encoder.py      a co-trained encoder: its trainable layers, inputs and model in front of the head
    state.py        TrainState and the files that keep it (checkpoint.pt, best.pt)
    features.py     Standardiser (fit on the train split, apply anywhere), Features, class weights
    model_files.py  model.safetensors + head.json: the best model, loadable without unpickling
    phases.py       a device run as a plan of phases (PHASES)
    baselines.py    logistic regression and the classical head on the same vectors
    metrics.py      accuracy, F1, confusion: pure functions
    trackers.py     TensorBoard and MLflow
    report.py       summary.json, plots, the table `orchestrate run` prints
"""
