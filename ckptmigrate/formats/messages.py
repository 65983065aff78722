"""Protocol-buffer classes for the messages ckptmigrate decodes with protobuf (its C parser,
upb, for the object graph; its text format for the `checkpoint` state file), declared
without importing TensorFlow.

Each file is declared here from the field numbers of TensorFlow's .proto files, as a
serialized FileDescriptorProto written by hand (importing descriptor_pb2 to build it costs
more than the parse), in a private pool per file, so the classes never clash with
TensorFlow's own when both are loaded. Only the fields ckptmigrate reads are declared;
unknown ones are kept by the parser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .protowire import MessageWriter

__all__ = [
    "DOUBLE",
    "OBJECT_GRAPH_FILE",
    "OPTIONAL",
    "REPEATED",
    "STRING",
    "ProtoFile",
    "parse_object_graph_message",
]

# FieldDescriptorProto.Type and .Label numbers (descriptor.proto)
DOUBLE, INT32, BYTES, STRING, MESSAGE = 1, 5, 12, 9, 11
OPTIONAL, REPEATED = 1, 3

# (field name, number, type, label, message type or None)
Field = tuple[str, int, int, int, str | None]


@dataclass(frozen=True)
class ProtoFile:
    """One .proto file's messages, declared in a pool of its own."""

    name: str
    package: str
    syntax: str
    messages: Mapping[str, Sequence[Field]] = field(hash=False)

    def message_class(self, message: str) -> Any:
        """The generated class of ``message``."""
        return _message_class(self, message)

    def serialized(self) -> bytes:
        """The FileDescriptorProto (descriptor.proto) declaring the messages."""
        file = MessageWriter()
        file.bytes_(1, self.name.encode())  # name
        file.bytes_(2, self.package.encode())  # package
        for message, fields in self.messages.items():
            described = MessageWriter().bytes_(1, message.encode())  # DescriptorProto.name
            for name, number, kind, label, type_name in fields:
                entry = MessageWriter().bytes_(1, name.encode())  # FieldDescriptorProto.name
                entry.varint(3, number).varint(4, label).varint(5, kind)
                if type_name is not None:
                    entry.bytes_(6, f".{self.package}.{type_name}".encode())
                described.bytes_(2, entry.getvalue())  # DescriptorProto.field
            file.bytes_(4, described.getvalue())  # message_type
        file.bytes_(12, self.syntax.encode())  # syntax
        return file.getvalue()


@cache
def _pool(file: ProtoFile) -> Any:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.serialized())
    return pool


@cache
def _message_class(file: ProtoFile, message: str) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(
        _pool(file).FindMessageTypeByName(f"{file.package}.{message}")
    )


# trackable_object_graph.proto. Text fields are declared as bytes: keys are decoded
# leniently (surrogateescape) instead of failing on invalid UTF-8.
OBJECT_GRAPH_FILE = ProtoFile(
    "ckptmigrate_object_graph.proto",
    "ckptmigrate.wire",
    "proto2",
    {
        "ObjectReference": [
            ("node_id", 1, INT32, OPTIONAL, None),
            ("local_name", 2, BYTES, OPTIONAL, None),
        ],
        "SerializedTensor": [
            ("name", 1, BYTES, OPTIONAL, None),
            ("full_name", 2, BYTES, OPTIONAL, None),
            ("checkpoint_key", 3, BYTES, OPTIONAL, None),
        ],
        "SlotVariableReference": [
            ("original_variable_node_id", 1, INT32, OPTIONAL, None),
            ("slot_name", 2, BYTES, OPTIONAL, None),
            ("slot_variable_node_id", 3, INT32, OPTIONAL, None),
        ],
        "TrackableObject": [
            ("children", 1, MESSAGE, REPEATED, "ObjectReference"),
            ("attributes", 2, MESSAGE, REPEATED, "SerializedTensor"),
            ("slot_variables", 3, MESSAGE, REPEATED, "SlotVariableReference"),
        ],
        "TrackableObjectGraph": [("nodes", 1, MESSAGE, REPEATED, "TrackableObject")],
    },
)


def parse_object_graph_message(data: bytes) -> Any:
    """Parse a TrackableObjectGraph; raises ValueError (DecodeError) when malformed."""
    message = OBJECT_GRAPH_FILE.message_class("TrackableObjectGraph")()
    message.ParseFromString(data)
    return message
