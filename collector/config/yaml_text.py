"""YAML text to data, as ``yaml.safe_load`` reads it, through libyaml when PyYAML has it.

PyYAML's pure-Python loader builds the whole node graph of a document before the data: for a config
with 10,000 SLOs (1.9 MB) that took 144 MiB at its peak and 29 s under tracemalloc, libyaml's
101 MiB and 6 s. The transient is what a process' peak RSS keeps (bench/RESULTS.md, "Ten thousand
SLOs' memory"). Both construct the same safe types. A document libyaml refuses is read again by
the Python loader, whose error says more ("expected ',' or ']', but got ':'" where libyaml has
"did not find expected ',' or ']'"); a config with an error is small and read once.
"""

from __future__ import annotations

from typing import Any

import yaml

_FAST: Any = getattr(yaml, "CSafeLoader", None)


def load_yaml(text: str) -> Any:
    """The data of one YAML document (safe types only); yaml.YAMLError when it is not YAML."""
    if _FAST is not None:
        try:
            return yaml.load(text, Loader=_FAST)  # a safe loader, in C
        except yaml.YAMLError:
            pass  # worded by the Python loader below
    return yaml.safe_load(text)
