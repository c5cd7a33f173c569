"""The README and docs/: every link inside them leads somewhere, and the README opens with its
two commands and a table of contents."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_readme_stays_a_short_read():
    """The README is what a newcomer reads in ten minutes; reference material lives in docs/."""
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) < 300


def slug(header: str) -> str:
    """GitHub's anchor of a header: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", header.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(header) for header in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_leads_somewhere(document):
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        assert linked.exists(), f"{document.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{document.name}: no header for #{anchor} in {linked.name}"


def test_readme_opens_with_contents_and_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    headers = re.findall(r"^## (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), flags=re.M)
    assert headers[:2] == ["Quick start", "Python"]
    assert "**Contents:**" in text.split("## Quick start")[0]
    quick_start = text.split("## Quick start")[1].split("## Python")[0]
    assert "pip install torch==2.13.0 -e . && orchestrate run" in quick_start
    assert "pip install -e '.[test]' && python -m pytest -q" in quick_start


def test_the_layers_picture_names_every_layer_the_architecture_test_checks():
    from tests.support.layers import LAYERS

    picture = (REPO / "docs" / "layers.svg").read_text(encoding="utf-8")
    missing = [prefix for layer in LAYERS for prefix in layer if prefix.split(".")[-1] not in picture]
    assert not missing, f"docs/layers.svg does not show {missing}: python docs/diagrams/layers.py"
    assert "layers.svg" in (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
