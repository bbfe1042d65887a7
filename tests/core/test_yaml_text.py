"""collector/config/yaml_text.py: YAML read through libyaml, the same data and the Python loader's
error messages."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import yaml_text
from collector.config.yaml_text import load_yaml

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def test_libyaml_is_what_reads_here() -> None:
    # PyYAML's wheels bundle libyaml; without it the module falls back to the Python loader.
    assert yaml_text._FAST is yaml.CSafeLoader


@settings(max_examples=200, deadline=None)
@given(_DATA, st.sampled_from([True, False]))
def test_the_same_data_as_safe_load(data: object, flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow)
    assert load_yaml(text) == yaml.safe_load(text)


def test_config_shaped_text_with_comments_anchors_and_variables() -> None:
    text = """
# a comment
receivers:
  forward: &endpoint {endpoint: "${FORWARD:-0.0.0.0:24224}"}
  other: *endpoint
exporters: {local: {path: ./data/b.db}}
slos:
  - {name: a, objective: 99.9, period: 30d, enabled: yes, count: 0x10}
"""
    assert load_yaml(text) == yaml.safe_load(text)


def test_an_error_is_worded_by_the_python_loader() -> None:
    text = "service:\n  pipelines:\n    logs:\n      receivers: [forward, otlp\n      exporters: [x]\n"
    with pytest.raises(yaml.YAMLError) as fast:
        load_yaml(text)
    with pytest.raises(yaml.YAMLError) as reference:
        yaml.safe_load(text)
    assert str(fast.value) == str(reference.value)
    assert "but got" in str(fast.value)


def test_only_safe_types_are_constructed() -> None:
    with pytest.raises(yaml.YAMLError):
        load_yaml("!!python/object/apply:os.system ['true']")
