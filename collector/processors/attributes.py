"""The ``attributes`` processor: insert, update, upsert or delete record or resource attributes.

Shaped like the OpenTelemetry Collector's attributes processor, e.g. tagging every record with the
cluster name or removing a header that carries credentials.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from collector.core.component import ComponentConfig, Processor, register
from collector.core.model import Batch


class AttributeAction(ComponentConfig):
    key: str
    action: Literal["insert", "update", "upsert", "delete"]
    value: Any = None
    # resource attributes describe the source (service.name, k8s.*); record attributes the event.
    target: Literal["record", "resource"] = "record"

    @model_validator(mode="after")
    def _value_given(self) -> AttributeAction:
        if self.action != "delete" and self.value is None:
            raise ValueError(f"action {self.action!r} needs a value")
        return self


class AttributesConfig(ComponentConfig):
    actions: list[AttributeAction]


@register
class AttributesProcessor(Processor[AttributesConfig]):
    type_name = "attributes"
    config_model = AttributesConfig
    mutates_data: ClassVar[bool] = True

    def process(self, batch: Batch) -> Batch | None:
        actions: list[AttributeAction] = self.config.actions
        copied: dict[int, dict[str, Any]] = {}  # resources are shared between records: copy once each
        for item in batch.items:
            for act in actions:
                if act.target == "resource":
                    res = item.resource
                    if id(res) not in copied:
                        copied[id(res)] = dict(res)
                    item.resource = copied[id(res)]
                    attrs: dict[str, Any] = item.resource
                else:
                    attrs = item.attributes
                present = act.key in attrs
                if act.action == "delete":
                    attrs.pop(act.key, None)
                elif (
                    (act.action == "insert" and not present)
                    or (act.action == "update" and present)
                    or (act.action == "upsert")
                ):
                    attrs[act.key] = act.value
        return batch
