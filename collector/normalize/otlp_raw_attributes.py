"""Twins of OTLP's trace and logs export requests whose records keep their attributes serialized.

Reading an attribute through upb's Python objects takes a wrapper for the KeyValue, another for its
AnyValue and three attribute reads, about a microsecond an attribute, and a span or log record
carries several. ``RawExportTraceServiceRequest`` and ``RawExportLogsServiceRequest`` parse the same
bytes with the same upb parser, but declare ``Span.attributes`` (field 9) and
``LogRecord.attributes`` (field 6) as ``repeated bytes``: each attribute arrives as its KeyValue's
serialized bytes, which collector/normalize/raw_key_values.py reads without those objects.

A twin is wire-compatible by protobuf's rules: an embedded message and ``bytes`` are both
length-delimited, so every request parses the same way and ``SerializeToString`` gives the same bytes.
The twins are built at import from the descriptors of the installed (locked) opentelemetry-proto,
with only that one field changed, in a descriptor pool of their own. What upb no longer checks at
parse time (that an attribute is a well-formed KeyValue with valid UTF-8) raw_key_values.py leaves
to protobuf, attribute by attribute. Resource, scope, event and link attributes, read once per group
or seldom, stay KeyValue messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["RawExportLogsServiceRequest", "RawExportTraceServiceRequest", "original_names"]

# The twins' packages are the originals with this prefix in place of the original one.
_RAW_PREFIX, _ORIGINAL_PREFIX = "burnline.raw.", "opentelemetry.proto."


# The twins' own pool, holding the original common and resource messages they use.
_POOL = descriptor_pool.DescriptorPool()
for _module in (common_pb2, resource_pb2):
    _proto = descriptor_pb2.FileDescriptorProto()
    _module.DESCRIPTOR.CopyToProto(_proto)  # as they are: the twins use the original KeyValue
    _POOL.Add(_proto)


def _file(module: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    proto.package = proto.package.replace(_ORIGINAL_PREFIX, _RAW_PREFIX, 1)
    proto.name = f"burnline/raw/{proto.name}"
    return proto


def _retarget(messages: Any, package: str) -> None:
    """Points the twin's references to its package's messages at the twin's own."""
    original = "." + package.replace(_RAW_PREFIX, _ORIGINAL_PREFIX, 1) + "."
    for message in messages:
        for field in message.field:
            if field.type_name.startswith(original):
                field.type_name = f".{package}.{field.type_name[len(original) :]}"
        _retarget(message.nested_type, package)


def _twin(
    records: Any,
    record: str,
    attributes_number: int,
    service: Any,
    request: str,
) -> type[Message]:
    """The twin of ``service``'s ``request`` whose ``record`` messages (of ``records``) have field
    ``attributes_number`` (their repeated KeyValue attributes) as ``repeated bytes``."""
    data = _file(records)
    _retarget(data.message_type, data.package)
    (message,) = (m for m in data.message_type if m.name == record)
    (attributes,) = (f for f in message.field if f.number == attributes_number)
    if attributes.name != "attributes" or attributes.type_name != ".opentelemetry.proto.common.v1.KeyValue":
        raise RuntimeError(f"opentelemetry-proto's {record} field {attributes_number} has changed")
    attributes.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    attributes.ClearField("type_name")
    _POOL.Add(data)

    requests = _file(service)
    original_file = records.DESCRIPTOR.name
    requests.dependency[:] = [data.name if d == original_file else d for d in requests.dependency]
    # Only the request message: the responses and the service are the original ones.
    kept = [m for m in requests.message_type if m.name == request]
    del requests.message_type[:]
    requests.message_type.extend(kept)
    del requests.service[:]
    _retarget(requests.message_type, data.package)  # the request's records are the twin's
    _POOL.Add(requests)
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{requests.package}.{request}"))


RawExportTraceServiceRequest = _twin(trace_pb2, "Span", 9, trace_service_pb2, "ExportTraceServiceRequest")
RawExportLogsServiceRequest = _twin(logs_pb2, "LogRecord", 6, logs_service_pb2, "ExportLogsServiceRequest")


def original_names(text: str) -> str:
    """``text`` (protobuf's error message) naming the original messages, not the twin's: what a
    client sent is an OTLP request, and the twin is how burnline reads it."""
    return text.replace(_RAW_PREFIX, _ORIGINAL_PREFIX)
