"""Protocol-buffer classes for the messages a checkpoint stores, decoded by protobuf's C
parser (upb) without importing TensorFlow.

The descriptors are declared here from the field numbers of TensorFlow's
tensor_bundle.proto, tensor_shape.proto, tensor_slice.proto, versions.proto and
trackable_object_graph.proto, in a private pool (so they never clash with TensorFlow's own
when both are loaded). Text fields are declared as bytes: keys are decoded leniently
(surrogateescape) instead of failing on invalid UTF-8. Only the fields ckptmigrate reads are
declared; unknown ones are kept by the parser.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .protowire import MessageWriter

_PACKAGE = "ckptmigrate.wire"

# (message, [(field name, number, type, label, message type or None)])
_INT32, _INT64, _BOOL, _BYTES, _FIXED32, _MESSAGE = 5, 3, 8, 12, 7, 11
_OPTIONAL, _REPEATED = 1, 3
_MESSAGES: dict[str, list[tuple[str, int, int, int, str | None]]] = {
    "VersionDef": [
        ("producer", 1, _INT32, _OPTIONAL, None),
        ("min_consumer", 2, _INT32, _OPTIONAL, None),
        ("bad_consumers", 3, _INT32, _REPEATED, None),
    ],
    "BundleHeaderProto": [
        ("num_shards", 1, _INT32, _OPTIONAL, None),
        ("endianness", 2, _INT32, _OPTIONAL, None),
        ("version", 3, _MESSAGE, _OPTIONAL, "VersionDef"),
    ],
    "Dim": [("size", 1, _INT64, _OPTIONAL, None), ("name", 2, _BYTES, _OPTIONAL, None)],
    "TensorShapeProto": [
        ("dim", 2, _MESSAGE, _REPEATED, "Dim"),
        ("unknown_rank", 3, _BOOL, _OPTIONAL, None),
    ],
    "Extent": [("start", 1, _INT64, _OPTIONAL, None), ("length", 2, _INT64, _OPTIONAL, None)],
    "TensorSliceProto": [("extent", 1, _MESSAGE, _REPEATED, "Extent")],
    "BundleEntryProto": [
        ("dtype", 1, _INT32, _OPTIONAL, None),
        ("shape", 2, _MESSAGE, _OPTIONAL, "TensorShapeProto"),
        ("shard_id", 3, _INT32, _OPTIONAL, None),
        ("offset", 4, _INT64, _OPTIONAL, None),
        ("size", 5, _INT64, _OPTIONAL, None),
        ("crc32c", 6, _FIXED32, _OPTIONAL, None),
        ("slices", 7, _MESSAGE, _REPEATED, "TensorSliceProto"),
    ],
    "ObjectReference": [
        ("node_id", 1, _INT32, _OPTIONAL, None),
        ("local_name", 2, _BYTES, _OPTIONAL, None),
    ],
    "SerializedTensor": [
        ("name", 1, _BYTES, _OPTIONAL, None),
        ("full_name", 2, _BYTES, _OPTIONAL, None),
        ("checkpoint_key", 3, _BYTES, _OPTIONAL, None),
    ],
    "SlotVariableReference": [
        ("original_variable_node_id", 1, _INT32, _OPTIONAL, None),
        ("slot_name", 2, _BYTES, _OPTIONAL, None),
        ("slot_variable_node_id", 3, _INT32, _OPTIONAL, None),
    ],
    "TrackableObject": [
        ("children", 1, _MESSAGE, _REPEATED, "ObjectReference"),
        ("attributes", 2, _MESSAGE, _REPEATED, "SerializedTensor"),
        ("slot_variables", 3, _MESSAGE, _REPEATED, "SlotVariableReference"),
    ],
    "TrackableObjectGraph": [("nodes", 1, _MESSAGE, _REPEATED, "TrackableObject")],
}


@cache
def message_class(name: str) -> Any:
    """The generated class for one of the messages above."""
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{_PACKAGE}.{name}"))


@cache
def _pool() -> Any:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(_file_descriptor())
    return pool


def _file_descriptor() -> bytes:
    """The serialized FileDescriptorProto (descriptor.proto) declaring ``_MESSAGES``,
    written by hand: importing descriptor_pb2 to build it costs more than the parse."""
    file = MessageWriter()
    file.bytes_(1, b"ckptmigrate_wire.proto")  # name
    file.bytes_(2, _PACKAGE.encode())  # package
    for message, fields in _MESSAGES.items():
        described = MessageWriter().bytes_(1, message.encode())  # DescriptorProto.name
        for field, number, kind, label, type_name in fields:
            entry = MessageWriter().bytes_(1, field.encode())  # FieldDescriptorProto.name
            entry.varint(3, number).varint(4, label).varint(5, kind)
            if type_name is not None:
                entry.bytes_(6, f".{_PACKAGE}.{type_name}".encode())
            described.bytes_(2, entry.getvalue())  # DescriptorProto.field
        file.bytes_(4, described.getvalue())  # message_type
    file.bytes_(12, b"proto2")  # syntax
    return file.getvalue()


def parse(name: str, data: bytes) -> Any:
    """Parse ``data`` as message ``name``; raises ValueError (DecodeError) when malformed."""
    message = message_class(name)()
    message.ParseFromString(data)
    return message
