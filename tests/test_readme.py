"""The README's configuration examples are valid configuration: every component they show parses
with its config model, so a reader who copies one gets no validation error. (Paths to certificate
files are the reader's own; only their existence is not checked.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from collector.core.component import component_class

README = Path(__file__).resolve().parent.parent / "README.md"
_SECTIONS = (("receiver", "receivers"), ("exporter", "exporters"), ("processor", "processors"))


def _examples() -> list[tuple[str, str, str, Any]]:
    found = []
    for block in re.findall(r"```ya?ml\n(.*?)```", README.read_text(), re.S):
        data = yaml.safe_load(re.sub(r"\$\{[^}]+\}", "from-the-environment", block))
        if not isinstance(data, dict):
            continue
        for kind, section in _SECTIONS:
            for cid, raw in (data.get(section) or {}).items():
                found.append((kind, section, cid, raw))
    return found


EXAMPLES = _examples()


def test_the_readme_shows_components() -> None:
    assert {section for _kind, section, _cid, _raw in EXAMPLES} >= {"receivers", "exporters"}


@pytest.mark.parametrize(
    ("kind", "section", "cid", "raw"), EXAMPLES, ids=[f"{s}.{c}" for _k, s, c, _r in EXAMPLES]
)
def test_every_component_example_is_valid(kind: str, section: str, cid: str, raw: Any) -> None:
    cls = component_class(kind, cid.partition("/")[0])
    assert cls is not None, f"{section}.{cid}: no such {kind} type"
    try:
        cls.config_model.model_validate(raw or {})
    except ValidationError as exc:
        problems = [e for e in exc.errors() if "does not exist" not in str(e.get("msg", ""))]
        assert not problems, f"{section}.{cid}: {problems}"
