"""A twin of OTLP's ExportTraceServiceRequest whose spans keep their attributes serialized.

Reading an attribute through upb's Python objects takes a wrapper for the KeyValue, another for its
AnyValue and three attribute reads, about a microsecond an attribute, and a span carries several.
``RawExportTraceServiceRequest`` parses the same bytes with the same upb parser, but declares
``Span.attributes`` (field 9) as ``repeated bytes``: each attribute arrives as its KeyValue's
serialized bytes, which collector/normalize/raw_key_values.py reads without those objects.

The twin is wire-compatible by protobuf's rules: an embedded message and ``bytes`` are both
length-delimited, so every request parses the same way and ``SerializeToString`` gives the same bytes.
It is built at import from the descriptors of the installed (locked) opentelemetry-proto, with only
that one field changed, in a descriptor pool of its own. What upb no longer checks at parse time
(that an attribute is a well-formed KeyValue with valid UTF-8) raw_key_values.py leaves to protobuf,
attribute by attribute.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["RawExportTraceServiceRequest", "original_names"]

# The twin's packages are the originals with this prefix in place of the original one.
_RAW_PREFIX, _ORIGINAL_PREFIX = "burnline.raw.", "opentelemetry.proto."
_TRACE_PACKAGE = f"{_ORIGINAL_PREFIX}trace.v1"
_RAW_TRACE_PACKAGE = f"{_RAW_PREFIX}trace.v1"
_RAW_TRACE_FILE = "burnline/raw/trace.proto"
# Span.attributes: repeated KeyValue on the wire, the one field the twin changes.
_SPAN_ATTRIBUTES_NUMBER = 9


def _file(module: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return proto


def _retarget(messages: Any) -> None:
    """Points the twin's references to trace.proto's messages at the twin's own."""
    for message in messages:
        for field in message.field:
            if field.type_name.startswith(f".{_TRACE_PACKAGE}."):
                field.type_name = f".{_RAW_TRACE_PACKAGE}.{field.type_name[len(_TRACE_PACKAGE) + 2 :]}"
        _retarget(message.nested_type)


def _build() -> type[Message]:
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2):
        pool.Add(_file(module))

    trace = _file(trace_pb2)
    original_trace_file = trace.name
    trace.name, trace.package = _RAW_TRACE_FILE, _RAW_TRACE_PACKAGE
    _retarget(trace.message_type)
    (span,) = (m for m in trace.message_type if m.name == "Span")
    (attributes,) = (f for f in span.field if f.number == _SPAN_ATTRIBUTES_NUMBER)
    if attributes.name != "attributes" or attributes.label != attributes.LABEL_REPEATED:
        raise RuntimeError(f"opentelemetry-proto's Span field {_SPAN_ATTRIBUTES_NUMBER} has changed")
    attributes.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    attributes.ClearField("type_name")
    pool.Add(trace)

    service = _file(trace_service_pb2)
    service.name = "burnline/raw/trace_service.proto"
    service.package = service.package.replace(_ORIGINAL_PREFIX, _RAW_PREFIX, 1)
    service.dependency[:] = [_RAW_TRACE_FILE if d == original_trace_file else d for d in service.dependency]
    # Only the request message: the responses and the service are the original ones.
    kept = [m for m in service.message_type if m.name == "ExportTraceServiceRequest"]
    del service.message_type[:]
    service.message_type.extend(kept)
    del service.service[:]
    _retarget(service.message_type)
    pool.Add(service)
    request = pool.FindMessageTypeByName(f"{service.package}.ExportTraceServiceRequest")
    return message_factory.GetMessageClass(request)


RawExportTraceServiceRequest: type[Message] = _build()


def original_names(text: str) -> str:
    """``text`` (protobuf's error message) naming the original messages, not the twin's: what a
    client sent is an OTLP request, and the twin is how burnline reads it."""
    return text.replace(_RAW_PREFIX, _ORIGINAL_PREFIX)
