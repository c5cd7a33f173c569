"""configs/cluster.yaml is a valid Ray cluster launcher config, by Ray's own schema."""
import copy
from pathlib import Path

import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "configs" / "cluster.yaml"


def validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_config_passes_rays_schema():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    validate(config)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any("g5" in t["node_config"]["InstanceType"] for t in types.values()), "a GPU worker type"
    assert any("pip install" in c and "hybrid-orchestrator" in c for c in config["setup_commands"])
    assert "~/hybrid-orchestrator" in config["file_mounts"]


def test_the_schema_check_can_fail():
    import jsonschema

    config = yaml.safe_load(CLUSTER_YAML.read_text())
    config["available_node_types"]["head"]["max_wrkers"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate(config)
