"""IBM Quantum backends in this process, with no run: fake devices in qiskit-ibm-runtime's local testing
mode (Session, Batch and job mode, the primitive's options), a token in a config refused, and which
service errors are retried (ibm_<device> against the local IBM Quantum Platform, and runs:
tests/integration/test_ibm_backends.py)."""
import numpy as np
import pytest

from orchestrator.cli import main
from tests.support.ibm import TOKEN, one_error_line


def device_backend(name: str, *overrides: str):
    """The backend of a config on device `name`, as a run builds it (its family in the registry)."""
    from orchestrator.config import load_config
    from orchestrator.quantum.backends import make_backend

    return make_backend(load_config(overrides=[f"quantum.backend={name}", *overrides]))


@pytest.mark.parametrize("mode, expected", [("session", "Session"), ("batch", "Batch"), ("job", None)])
def test_execution_modes_give_the_device_values_and_close(mode, expected, monkeypatch):
    from qiskit_ibm_runtime import Session

    from orchestrator.quantum.backends.aer import AerBackend, AerOptions
    from orchestrator.quantum.circuits import QuantumSpec, build_dressed_circuit
    from orchestrator.quantum.runner import CircuitRunner

    closed = []
    real_close = Session.close
    monkeypatch.setattr(Session, "close", lambda self: (closed.append(type(self).__name__), real_close(self)))
    template = build_dressed_circuit(QuantumSpec(2, 1))
    table = np.array([[0.3, -0.7, 0.2, 1.1], [1.2, 0.4, -0.5, 0.1]])
    backend = device_backend("fake_manila", f"runtime.execution_mode={mode}", "quantum.shots=4000", "quantum.seed=11")
    noisy = CircuitRunner(template, backend).evaluate(table)
    assert type(backend._mode).__name__ == expected if expected else backend._mode is None
    backend.close()
    assert closed == ([expected] if expected else [])
    exact = CircuitRunner(template, AerBackend(AerOptions())).evaluate(table)
    assert np.abs(noisy - exact).max() < 0.15      # device noise and shot noise, nothing more


def test_mitigation_and_execution_options_reach_the_primitive():
    estimator = device_backend("fake_manila", "runtime.precision=0.05", "runtime.resilience_level=1",
                               "runtime.dynamical_decoupling=true", "runtime.dd_sequence=XY4",
                               "runtime.twirling=true").estimator()
    assert estimator.options.default_precision == 0.05 and estimator.options.resilience_level == 1
    assert estimator.options.dynamical_decoupling.enable is True
    assert estimator.options.dynamical_decoupling.sequence_type == "XY4"
    assert estimator.options.twirling.enable_gates is True and estimator.options.twirling.enable_measure is True


def test_resilience_defaults_to_0_in_local_testing_mode():
    assert device_backend("fake_manila").estimator().options.resilience_level == 0
    assert device_backend("fake_manila", "runtime.resilience_level=1").estimator().options.resilience_level == 1


def test_a_token_in_a_config_is_refused(capsys, tmp_path):
    assert main(["run", "--set", f"runtime.token={TOKEN}", "--run-dir", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "a token never goes into a config" in line and TOKEN not in line


def test_transient_and_permanent_errors_are_told_apart():
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    from orchestrator.quantum.backends.runtime import is_transient

    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert is_transient(RequestsApiError("busy", 503)) and is_transient(RequestsApiError("slow down", 429))
    assert is_transient(IBMRuntimeError("Failed to run program: '502 Server Error: Bad Gateway for url'"))
    assert is_transient(RuntimeError("the job queue is full, try again later"))
    assert not is_transient(RequestsApiError("bad", 400)) and not is_transient(RequestsApiError("no", 403))
    assert not is_transient(IBMRuntimeError("Failed to run program: '401 Client Error: Unauthorized for url'"))
    assert not is_transient(ValueError("a parameter array of the wrong shape"))
