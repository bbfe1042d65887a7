"""A document layout compiled once into one dict-literal expression, for the log and span shapes.

The layout is a nested dict whose leaves are markers ``(parameter, index)``: the value comes from
``parameter[index]`` of the compiled function's arguments (lists of values in a shape's order).
Building a document is then one call that makes every nested dict at once, with no per-record
placement, nesting or copying.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _literal(node: dict[str, Any]) -> str:
    members = []
    for key, value in node.items():
        if isinstance(value, dict):
            members.append(f"{key!r}: {_literal(value)}")
        else:
            parameter, index = value
            members.append(f"{key!r}: {parameter}[{int(index)}]")
    return "{" + ", ".join(members) + "}"


def compile_document(layout: dict[str, Any], parameters: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """The function ``(*parameters) -> the document`` of ``layout`` (see the module docstring)."""
    for name in parameters:
        if not name.isidentifier():
            raise ValueError(f"{name!r} is not a parameter name")
    code = f"lambda {', '.join(parameters)}: {_literal(layout)}"
    # Keys are repr()'d literals and leaves are parameter subscripts: nothing else is evaluated.
    build: Callable[..., dict[str, Any]] = eval(code, {"__builtins__": {}})
    return build
