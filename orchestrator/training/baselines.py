"""Classical baselines on the same standardised cached vectors as the quantum head.

- `fit_logistic_regression`: multinomial logistic regression, full-batch L-BFGS, L2 penalty,
  class weights in the loss (torch only; no scikit-learn dependency).
- `fit_classical_head`: the hybrid head without its quantum layer, Linear(F -> Q) -> tanh ->
  Linear(Q -> C), trained like the quantum head (same optimizer, lr, batch, epochs, class
  weights) and picked by the same validation metric. It tells whether the circuit adds anything.
"""
from __future__ import annotations

import copy


import numpy as np
import torch
from torch import nn

from orchestrator.config import TrainConfig
from orchestrator.training.features import Features
from orchestrator.training.metrics import Scores, score





def fit_logistic_regression(x_train: torch.Tensor, y_train: torch.Tensor, n_classes: int,
                            class_weights: torch.Tensor | None, l2: float = 1e-3,
                            max_iter: int = 200) -> nn.Linear:
    """A Linear(F -> C) minimising weighted cross-entropy + l2/2 * ||W||^2 over the whole train split."""
    model = nn.Linear(x_train.shape[1], n_classes).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    x, y = x_train.double(), y_train
    loss_fn = nn.CrossEntropyLoss(weight=None if class_weights is None else class_weights.double())
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y) + 0.5 * l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return model


def fit_classical_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                       n_classes: int, n_hidden: int, class_weights: torch.Tensor | None, *, optimizer: str,
                       lr: float, weight_decay: float, batch_size: int, epochs: int, seed: int,
                       select_metric: str, positive: int) -> nn.Module:
    """Linear(F -> n_hidden) -> tanh -> Linear(n_hidden -> C), best epoch on validation."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x_train.shape[1], n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_classes))
    optimizer_class = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    opt = optimizer_class(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights)
    best_value, best_state = -np.inf, copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(x_train))
        model.train()
        for start in range(0, len(order), batch_size):
            rows = torch.from_numpy(order[start:start + batch_size])
            opt.zero_grad()
            loss_fn(model(x_train[rows]), y_train[rows]).backward()
            opt.step()
        with torch.no_grad():
            predicted = model(x_val).argmax(dim=1).numpy()
        value = score(y_val.numpy(), predicted, n_classes, positive).metric(select_metric)
        if value > best_value:
            best_value, best_state = value, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval()


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        weight = next(model.parameters())
        return model(x.to(weight.dtype)).argmax(dim=1).numpy()


def fit_baselines(train: Features, val: Features, test: Features, n_classes: int, positive: int,
                  class_weights: torch.Tensor | None, n_hidden: int, t: TrainConfig) -> dict[str, Scores]:
    """Both baselines fitted on the train split and scored on test, in summary.json's order."""
    logistic = fit_logistic_regression(train.x, train.y, n_classes, class_weights)
    classical_head = fit_classical_head(
        train.x, train.y, val.x, val.y, n_classes, n_hidden, class_weights, optimizer=t.optimizer, lr=t.lr,
        weight_decay=t.weight_decay, batch_size=t.batch_size, epochs=t.epochs, seed=t.seed,
        select_metric=t.select_metric, positive=positive)
    return {name: score(test.y.numpy(), predict(model, test.x), n_classes, positive)
            for name, model in (("logistic_regression", logistic), ("classical_head", classical_head))}
