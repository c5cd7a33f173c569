"""summary.json's written-down schema (docs/summary.schema.json), for the tests that check summaries."""
import json
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "summary.schema.json").read_text())


def summary_problems(summary: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'.'.join(map(str, error.absolute_path)) or 'summary'}: {error.message}"
            for error in validator.iter_errors(summary)]


def assert_valid_summary(path: Path) -> None:
    problems = summary_problems(json.loads(Path(path).read_text()))
    assert not problems, f"{path} does not match docs/summary.schema.json: {problems[:5]}"
