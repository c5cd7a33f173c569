"""The house's shape, checked on the source: which package may import which, no import circle,
Ray only in workers/, short functions on the training path.

Layers (tests/support/layers.py), lowest first. A module may import its own layer and the layers below, never above:
a run's config walks down the house once (cli -> pipeline -> training -> quantum -> workers ->
embeddings), and everything stands on orchestrator.core.
"""
import ast
from pathlib import Path

import pytest

from tests.support.layers import LAYERS

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "workers", "embeddings")
TRAINING_PATH = ("orchestrator/training", "orchestrator/quantum/runner.py", "orchestrator/quantum/model.py",
                 "orchestrator/quantum/shift_rule.py", "orchestrator/pipeline.py")
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in modules:
                found.add(name)
    return found


def layer_of(module: str) -> int:
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_a_layer_above_its_own(graph):
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in graph.items() for target in targets if layer_of(target) > layer_of(module)]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_circle(graph):
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(target):] + [module, target]))
            if target not in state:
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_embeddings_and_workers_import_nothing_of_the_orchestrator_but_its_core(graph):
    reaching_up = [f"{module} imports {target}" for module, targets in graph.items()
                   if module.split(".")[0] in ("embeddings", "workers")
                   for target in targets
                   if target.startswith("orchestrator") and not target.startswith("orchestrator.core")]
    assert not reaching_up, "\n".join(reaching_up)


def test_ray_is_used_only_in_workers():
    users = []
    for name, path in project_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imports_ray = any(isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names)
                          or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray"
                          for node in ast.walk(tree))
        if imports_ray and not name.startswith("workers"):
            users.append(name)
    assert not users, f"Ray belongs in workers/, but these import it: {users}"


def test_functions_on_the_training_path_are_short():
    long = []
    for entry in TRAINING_PATH:
        for path in sorted((REPO / entry).rglob("*.py")) if (REPO / entry).is_dir() else [REPO / entry]:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)


def test_every_backend_family_is_named_once_and_asked_only_through_the_registry():
    """A family's name rule is in core/backend_names.py, its object in the registry: nothing else in
    the house tells backends apart by their names."""
    from orchestrator.core.backend_names import NAMES, family_of
    from orchestrator.quantum.backends import FAMILIES, backend_family

    assert [names.family for names in NAMES] == list(FAMILIES)
    assert {family_of("aer_simulator"), family_of("fake_fez"), family_of("ibm_kingston")} == {"aer", "fake", "ibm"}
    assert family_of("ibm_") is None and family_of("fez") is None
    assert backend_family("fake_fez").remote and not backend_family("aer_simulator").remote
    branches = []
    for name, path in project_modules().items():
        if name.startswith("orchestrator.quantum.backends") or name == "orchestrator.core.backend_names":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if any(text in line for text in ('startswith("fake_")', 'startswith("ibm_")', '== "aer"', '!= "aer"',
                                             "backend_kind")):
                branches.append(f"{name}:{number}: {line.strip()}")
    assert not branches, "\n".join(branches)


def test_the_checks_can_fail():
    """The checkers themselves, on made-up graphs: an upward import and a circle are caught."""
    with pytest.raises(AssertionError, match="orchestrator.core.errors .layer 0. imports orchestrator.cli"):
        test_no_module_imports_a_layer_above_its_own({"orchestrator.core.errors": {"orchestrator.cli"}})
    with pytest.raises(AssertionError, match="import circle: a -> b -> a"):
        test_there_is_no_import_circle({"a": {"b"}, "b": {"a"}})
