"""Render the API reference (docs/reference.md) from the protos' descriptors and comments.

scripts/generate_protos.py has protoc write a FileDescriptorSet with source info (the comments)
for protos/kfpgrpc/v1 and passes it to `render`, so the reference is regenerated and checked
together with the code. The text depends on the descriptors only: files in name order, then
declaration order, so the same protos always give the same bytes.

Headings carry bare type names (`Run`, `Run.StorageState`) so that links can use the anchors
GitHub derives from heading text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from google.protobuf.descriptor_pb2 import (
    DescriptorProto,
    EnumDescriptorProto,
    FieldDescriptorProto,
    FileDescriptorProto,
    FileDescriptorSet,
    ServiceDescriptorProto,
)

# SourceCodeInfo.Location paths are field numbers and indexes from the file down.
_FILE_MESSAGE = FileDescriptorProto.MESSAGE_TYPE_FIELD_NUMBER
_FILE_ENUM = FileDescriptorProto.ENUM_TYPE_FIELD_NUMBER
_FILE_SERVICE = FileDescriptorProto.SERVICE_FIELD_NUMBER
_MESSAGE_FIELD = DescriptorProto.FIELD_FIELD_NUMBER
_MESSAGE_NESTED = DescriptorProto.NESTED_TYPE_FIELD_NUMBER
_MESSAGE_ENUM = DescriptorProto.ENUM_TYPE_FIELD_NUMBER
_MESSAGE_ONEOF = DescriptorProto.ONEOF_DECL_FIELD_NUMBER
_ENUM_VALUE = EnumDescriptorProto.VALUE_FIELD_NUMBER
_SERVICE_METHOD = ServiceDescriptorProto.METHOD_FIELD_NUMBER

_CODE_SPAN = re.compile(r"(`[^`]*`)")

Path = tuple[int, ...]


def render(descriptors: FileDescriptorSet, intro: str) -> str:
    """The reference as markdown: `intro`, the services with their RPCs, then every message and
    enum of every file with its fields or values."""
    files = sorted(descriptors.file, key=lambda file: file.name)
    linked = {full_name: name for file in files for full_name, name in _type_names(file)}
    services = [service.name for file in files for service in file.service]
    lines = [
        "# API reference",
        "",
        intro,
        "",
        "Services: " + " · ".join(_link(name) for name in services),
        "",
        "Messages and enums by file: " + " · ".join(_link(_file_title(file)) for file in files),
        "",
        "## Services",
    ]
    for file in files:
        comments = _comments_of(file)
        for index, service in enumerate(file.service):
            lines += _service(service, (_FILE_SERVICE, index), comments, linked)
    lines += ["", "## Messages and enums"]
    for file in files:
        comments = _comments_of(file)
        lines += ["", f"### {_file_title(file)}"]
        for index, message in enumerate(file.message_type):
            lines += _message(message, message.name, (_FILE_MESSAGE, index), comments, linked)
        for index, enum in enumerate(file.enum_type):
            lines += _enum(enum, enum.name, (_FILE_ENUM, index), comments)
    return "\n".join(lines) + "\n"


def _type_names(file: FileDescriptorProto) -> Iterator[tuple[str, str]]:
    """(fully qualified name with its leading dot, name within the package) of every message and
    enum the file declares, nested ones included; map entries are not types of their own."""

    def walk(messages: Sequence[DescriptorProto], enums: Sequence[EnumDescriptorProto], prefix: str) -> Iterator[tuple[str, str]]:
        for enum in enums:
            yield f".{file.package}.{prefix}{enum.name}", prefix + enum.name
        for message in messages:
            if message.options.map_entry:
                continue
            yield f".{file.package}.{prefix}{message.name}", prefix + message.name
            yield from walk(message.nested_type, message.enum_type, f"{prefix}{message.name}.")

    return walk(file.message_type, file.enum_type, "")


def _file_title(file: FileDescriptorProto) -> str:
    return file.name.rsplit("/", 1)[-1]


def _comments_of(file: FileDescriptorProto) -> dict[Path, str]:
    return {tuple(location.path): location.leading_comments for location in file.source_code_info.location}


def _service(service: ServiceDescriptorProto, path: Path, comments: dict[Path, str], linked: dict[str, str]) -> list[str]:
    lines = ["", f"### {service.name}", *_block(comments.get(path, ""))]
    for index, method in enumerate(service.method):
        request = ("stream of " if method.client_streaming else "") + _type_link(method.input_type, linked)
        response = ("stream of " if method.server_streaming else "") + _type_link(method.output_type, linked)
        lines += ["", f"#### {method.name}", "", f"{request} → {response}"]
        lines += _block(comments.get((*path, _SERVICE_METHOD, index), ""))
    return lines


def _message(message: DescriptorProto, name: str, path: Path, comments: dict[Path, str], linked: dict[str, str]) -> list[str]:
    lines = ["", f"#### {name}", *_block(comments.get(path, ""))]
    if message.field:
        lines += ["", "| Field | Number | Type | Comment |", "|---|---|---|---|"]
        for index, field in enumerate(message.field):
            comment = _cell(comments.get((*path, _MESSAGE_FIELD, index), ""))
            lines.append(f"| `{field.name}` | {field.number} | {_field_type(field, message, linked)} | {comment} |")
    for index, oneof in enumerate(message.oneof_decl):
        members = ", ".join(f"`{field.name}`" for field in message.field if field.HasField("oneof_index") and field.oneof_index == index)
        comment = _cell(comments.get((*path, _MESSAGE_ONEOF, index), ""))
        lines += ["", f"Oneof `{oneof.name}`: at most one of {members}. {comment}".rstrip()]
    lines += _reserved(message)
    for index, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:
            lines += _message(nested, f"{name}.{nested.name}", (*path, _MESSAGE_NESTED, index), comments, linked)
    for index, enum in enumerate(message.enum_type):
        lines += _enum(enum, f"{name}.{enum.name}", (*path, _MESSAGE_ENUM, index), comments)
    return lines


def _enum(enum: EnumDescriptorProto, name: str, path: Path, comments: dict[Path, str]) -> list[str]:
    lines = ["", f"#### {name}", *_block(comments.get(path, "")), "", "| Value | Number | Comment |", "|---|---|---|"]
    for index, value in enumerate(enum.value):
        lines.append(f"| `{value.name}` | {value.number} | {_cell(comments.get((*path, _ENUM_VALUE, index), ''))} |")
    return lines


def _reserved(message: DescriptorProto) -> list[str]:
    """KFP fields kfpgrpc does not use are reserved: say which, so nobody reuses them."""
    numbers = [
        str(span.start) if span.end == span.start + 1 else f"{span.start}–{span.end - 1}"  # end is exclusive
        for span in message.reserved_range
    ]
    reserved = numbers + [f"`{name}`" for name in message.reserved_name]
    return ["", f"Reserved numbers and names: {', '.join(reserved)}."] if reserved else []


def _field_type(field: FieldDescriptorProto, message: DescriptorProto, linked: dict[str, str]) -> str:
    if field.type_name:
        entry = next((n for n in message.nested_type if n.options.map_entry and field.type_name.endswith(f".{n.name}")), None)
        if entry is not None:
            key, value = (_field_type(f, entry, linked) for f in entry.field)
            return f"map&lt;{key}, {value}>"
        base = _type_link(field.type_name, linked)
    else:
        base = FieldDescriptorProto.Type.Name(field.type).removeprefix("TYPE_").lower()
    return f"repeated {base}" if field.label == FieldDescriptorProto.LABEL_REPEATED else base


def _type_link(full_name: str, linked: dict[str, str]) -> str:
    """A type of these files as a link to its section; another (google.protobuf.*) as its name."""
    return _link(linked[full_name]) if full_name in linked else full_name.removeprefix(".")


def _link(heading: str) -> str:
    return f"[{heading}](#{_anchor(heading)})"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _comment_lines(comment: str) -> list[str]:
    """The comment's lines without the space that follows `//`."""
    return [line.removeprefix(" ").rstrip() for line in comment.rstrip("\n").split("\n")] if comment.strip() else []


def _block(comment: str) -> list[str]:
    """A comment as paragraphs, preceded by a blank line; lines indented in the comment (examples)
    become a code block."""
    lines: list[str] = []
    in_code = False
    for line in _comment_lines(comment):
        indented = line.startswith(" ")
        if indented != in_code:
            lines.append("```")
            in_code = indented
        lines.append(line.strip() if indented else _escape(line))
    if in_code:
        lines.append("```")
    return ["", *lines] if lines else []


def _cell(comment: str) -> str:
    """A comment on one line, fit for a table cell."""
    return _escape(" ".join(line.strip() for line in _comment_lines(comment))).replace("|", "\\|")


def _escape(text: str) -> str:
    """Outside code spans `<` would open an HTML tag (`@every <Go duration>`): write it as an entity."""
    return "".join(piece if piece.startswith("`") else piece.replace("<", "&lt;") for piece in _CODE_SPAN.split(text))
