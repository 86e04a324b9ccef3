"""The OpenAPI 3 document of the REST API, derived from proto/ and its google.api.http annotations.

`make proto` runs this over the descriptor set it builds for Envoy (plus source info, for the
comments), so the document cannot drift from what Envoy's grpc_json_transcoder serves. It
follows the transcoder's settings in gateway/config.py, the proto3 JSON mapping as Envoy prints
it:
- field names are the camelCase json_name; enums travel by name; 64-bit integers are strings;
  google.protobuf.Timestamp is an RFC 3339 string; maps are objects, repeated fields arrays;
- `always_print_primitive_fields` means every non-optional scalar, enum, repeated and map field
  of a response is present, so those are `required` in response schemas (request schemas
  require nothing: proto3 has no required fields, the server validates);
- path variables come from the template, the body is `*` minus them, and a GET's remaining
  scalar fields are query parameters;
- errors are google.rpc.Status as `convert_grpc_status` renders it, `{code, message, details}`,
  and Envoy's own replies (gateway/config.py local_reply_config) have the same shape.
The same run writes a self-contained HTML reference (tools/openapi_html.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from server.auth.policy import POLICY, Access

API_PACKAGE = "iot.v1"
TITLE = "ESP32 fleet control plane REST API"
VERSION = "v1"

FDP = descriptor_pb2.FieldDescriptorProto
INT32_TYPES = {FDP.TYPE_INT32, FDP.TYPE_SINT32, FDP.TYPE_SFIXED32}
UINT32_TYPES = {FDP.TYPE_UINT32, FDP.TYPE_FIXED32}
INT64_TYPES = {FDP.TYPE_INT64, FDP.TYPE_SINT64, FDP.TYPE_SFIXED64, FDP.TYPE_UINT64, FDP.TYPE_FIXED64}

# How Envoy's transcoder maps gRPC codes to HTTP (grpc-httpjson-transcoding), for the codes
# the control plane answers; Envoy's own replies (413 body too large, 404 unknown path) add to it.
ERROR_RESPONSES = {
    "400": "INVALID_ARGUMENT or FAILED_PRECONDITION: the request is malformed, or not allowed in the current state",
    "401": "UNAUTHENTICATED: no token, an invalid or expired one, or (login) wrong credentials",
    "403": "PERMISSION_DENIED: the caller's role or a block forbids the call",
    "404": "NOT_FOUND: no such object visible to the caller (another user's device is not found), or no such path",
    "409": "ALREADY_EXISTS or ABORTED: a duplicate, or a concurrent change; retrying may succeed",
    "429": "RESOURCE_EXHAUSTED: rate limited; a google.rpc.RetryInfo detail says when to retry",
    "503": "UNAVAILABLE: a dependency (the broker, the store) is down; retry later",
}
BODY_TOO_LARGE = "Envoy refused a body above its limit"

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "google.rpc.Status as Envoy renders it. `code` is the gRPC status code.",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "gRPC status code (5 NOT_FOUND, ...)"},
        "message": {"type": "string"},
        "details": {
            "type": "array",
            "description": "google.protobuf.Any values, e.g. google.rpc.RetryInfo or google.rpc.BadRequest",
            "items": {
                "type": "object",
                "required": ["@type"],
                "properties": {"@type": {"type": "string"}},
                "additionalProperties": True,
            },
        },
    },
    "additionalProperties": False,
}

WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
}


@dataclass
class Comments:
    """Leading comments by descriptor path (message, field, service, method), from source info."""

    by_path: dict[tuple[int, ...], str] = field(default_factory=dict)

    @classmethod
    def of(cls, proto: descriptor_pb2.FileDescriptorProto) -> Comments:
        found = {}
        for loc in proto.source_code_info.location:
            text = loc.leading_comments.strip() or loc.trailing_comments.strip()
            if text:
                found[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
        return cls(found)

    def get(self, *path: int) -> str:
        return self.by_path.get(path, "")


@dataclass
class Message:
    name: str  # fully qualified, with the leading dot
    proto: descriptor_pb2.DescriptorProto
    comments: Comments
    path: tuple[int, ...]

    def doc(self) -> str:
        return self.comments.get(*self.path)

    def field_doc(self, index: int) -> str:
        return self.comments.get(*self.path, 2, index)

    @property
    def is_map_entry(self) -> bool:
        return self.proto.options.map_entry


class Registry:
    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, Message] = {}
        self.enums: dict[str, tuple[descriptor_pb2.EnumDescriptorProto, str]] = {}
        self.files = list(files)
        for proto in self.files:
            comments = Comments.of(proto)
            prefix = f".{proto.package}" if proto.package else ""
            for i, message in enumerate(proto.message_type):
                self._add_message(f"{prefix}.{message.name}", message, comments, (4, i))
            for i, enum in enumerate(proto.enum_type):
                self.enums[f"{prefix}.{enum.name}"] = (enum, comments.get(5, i))

    def _add_message(
        self, name: str, message: descriptor_pb2.DescriptorProto, comments: Comments, path: tuple[int, ...]
    ) -> None:
        self.messages[name] = Message(name, message, comments, path)
        for i, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, comments, (*path, 3, i))
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = (enum, comments.get(*path, 4, i))


def schema_name(full_name: str) -> str:
    """Component name: the message name without our package, dotted nesting kept."""
    return full_name.removeprefix(f".{API_PACKAGE}.").lstrip(".")


class Builder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.schemas: dict[str, Any] = {"Status": STATUS_SCHEMA}

    def scalar(self, f: descriptor_pb2.FieldDescriptorProto, for_response: bool) -> dict[str, Any]:
        if f.type == FDP.TYPE_MESSAGE:
            if f.type_name in WELL_KNOWN:
                return dict(WELL_KNOWN[f.type_name])
            return {"$ref": f"#/components/schemas/{self.message(f.type_name, for_response)}"}
        if f.type == FDP.TYPE_ENUM:
            return {"$ref": f"#/components/schemas/{self.enum(f.type_name)}"}
        if f.type in INT32_TYPES:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if f.type in UINT32_TYPES:
            return {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
        if f.type in INT64_TYPES:
            # proto3 JSON prints 64-bit integers as strings (JavaScript numbers lose precision).
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}
        if f.type in (FDP.TYPE_DOUBLE, FDP.TYPE_FLOAT):
            return {"type": "number", "format": "double" if f.type == FDP.TYPE_DOUBLE else "float"}
        if f.type == FDP.TYPE_BOOL:
            return {"type": "boolean"}
        if f.type == FDP.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        return {"type": "string"}

    def field_schema(self, f: descriptor_pb2.FieldDescriptorProto, for_response: bool) -> dict[str, Any]:
        if f.type == FDP.TYPE_MESSAGE and f.label == FDP.LABEL_REPEATED:
            entry = self.registry.messages.get(f.type_name)
            if entry is not None and entry.is_map_entry:
                value = next(v for v in entry.proto.field if v.name == "value")
                return {"type": "object", "additionalProperties": self.scalar(value, for_response)}
        item = self.scalar(f, for_response)
        if f.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def enum(self, full_name: str) -> str:
        name = schema_name(full_name)
        if name not in self.schemas:
            enum, doc = self.registry.enums[full_name]
            schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in enum.value]}
            if doc:
                schema["description"] = doc
            self.schemas[name] = schema
        return name

    def message(self, full_name: str, for_response: bool) -> str:
        name = schema_name(full_name)
        if name in self.schemas:
            return name
        self.schemas[name] = {}  # placeholder: recursive messages refer to themselves
        self.schemas[name] = self.object_schema(full_name, for_response)
        return name

    def object_schema(self, full_name: str, for_response: bool, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        message = self.registry.messages[full_name]
        properties: dict[str, Any] = {}
        required: list[str] = []
        for index, f in enumerate(message.proto.field):
            if f.name in skip:
                continue
            schema = self.field_schema(f, for_response)
            doc = message.field_doc(index)
            if doc:
                # A $ref cannot carry siblings in OpenAPI 3.0; wrap it so the comment survives.
                schema = {"allOf": [schema], "description": doc} if "$ref" in schema else {**schema, "description": doc}
            properties[f.json_name] = schema
            always_printed = f.type != FDP.TYPE_MESSAGE or f.label == FDP.LABEL_REPEATED
            if for_response and always_printed and not f.proto3_optional:
                required.append(f.json_name)
        result: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            result["required"] = required
        if message.doc():
            result["description"] = message.doc()
        return result


@dataclass(frozen=True)
class Rule:
    verb: str
    template: str
    body: str


def http_rule(method: descriptor_pb2.MethodDescriptorProto) -> Rule | None:
    if not method.options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    if verb is None or verb == "custom":
        return None
    return Rule(verb, getattr(rule, verb), rule.body)


TEMPLATE_VAR = re.compile(r"\{([a-z_][a-z0-9_.]*)(=[^}]*)?\}")


def responses_for(ok: str, content: dict[str, Any], has_body: bool) -> dict[str, Any]:
    """The 200 answer, and every error status Envoy may map a gRPC status (or its own refusal) to."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}}
    responses: dict[str, Any] = {"200": {"description": ok, "content": content}}
    for code, text in ERROR_RESPONSES.items():
        responses[code] = {"description": text, **error}
    if has_body:
        responses["413"] = {"description": BODY_TOO_LARGE, **error}
    return dict(sorted(responses.items()))


def operation(
    builder: Builder, service: str, method: descriptor_pb2.MethodDescriptorProto, doc: str, rule: Rule
) -> tuple[str, dict[str, Any]]:
    request = builder.registry.messages[method.input_type]
    fields = {f.name: f for f in request.proto.field}
    docs = {f.name: request.field_doc(i) for i, f in enumerate(request.proto.field)}
    path_vars = [m.group(1) for m in TEMPLATE_VAR.finditer(rule.template)]
    path = TEMPLATE_VAR.sub(lambda m: "{" + fields[m.group(1)].json_name + "}", rule.template)
    parameters: list[dict[str, Any]] = []
    for var in path_vars:
        f = fields[var]
        # Envoy matches a path segment: it cannot be empty nor hold a slash.
        segment = {**builder.scalar(f, for_response=False), "minLength": 1, "pattern": "^[^/]+$"}
        param: dict[str, Any] = {"name": f.json_name, "in": "path", "required": True, "schema": segment}
        if docs[var]:
            param["description"] = docs[var]
        parameters.append(param)
    op: dict[str, Any] = {
        "operationId": f"{service}_{method.name}",
        "tags": [service],
        "summary": doc.split(". ", maxsplit=1)[0].rstrip(".") if doc else method.name,
        "x-grpc-method": f"/{API_PACKAGE}.{service}/{method.name}",
    }
    if doc:
        op["description"] = doc
    if rule.body == "*":
        body = builder.object_schema(method.input_type, for_response=False, skip=frozenset(path_vars))
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    elif rule.body:
        raise SystemExit(f"{method.name}: only body '*' is supported by tools/openapi.py")
    else:
        for name, f in fields.items():
            if name in path_vars:
                continue
            # Query parameters carry scalars (and well-known types written as strings).
            if f.label == FDP.LABEL_REPEATED or (f.type == FDP.TYPE_MESSAGE and f.type_name not in WELL_KNOWN):
                continue
            param = {"name": f.json_name, "in": "query", "required": False, "schema": builder.scalar(f, False)}
            if docs[name]:
                param["description"] = docs[name]
            parameters.append(param)
    if parameters:
        op["parameters"] = parameters
    response = {"$ref": f"#/components/schemas/{builder.message(method.output_type, for_response=True)}"}
    if method.server_streaming:
        # The transcoder streams a JSON array, one element per message, until the client closes.
        op["x-streaming"] = True
        content: dict[str, Any] = {"application/json": {"schema": {"type": "array", "items": response}}}
        ok = "A JSON array streamed one element per event; it stays open until the client closes it"
    else:
        content = {"application/json": {"schema": response}}
        ok = "OK"
    op["responses"] = responses_for(ok, content, has_body=bool(rule.body))
    access = POLICY.get(op["x-grpc-method"])
    if access is None:
        raise SystemExit(f"{op['x-grpc-method']} has no access policy (server/auth/policy.py)")
    if access == Access.PUBLIC:
        op["security"] = []
    op["x-access"] = str(access)
    return path, op


def build(descriptor_set: bytes) -> dict[str, Any]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    registry = Registry(fds.file)
    builder = Builder(registry)
    paths: dict[str, dict[str, Any]] = {}
    tags = []
    for proto in registry.files:
        if proto.package != API_PACKAGE:
            continue
        comments = Comments.of(proto)
        for s, service in enumerate(proto.service):
            tags.append({"name": service.name, "description": comments.get(6, s)})
            for m, method in enumerate(service.method):
                rule = http_rule(method)
                if rule is None:
                    continue
                path, op = operation(builder, service.name, method, comments.get(6, s, 2, m), rule)
                paths.setdefault(path, {})[rule.verb] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": (
                "Generated by `make proto` from proto/ (google.api.http annotations); Envoy transcodes "
                "these paths to the gRPC services. Send `Authorization: Bearer <token>` (from "
                "POST /api/auth/login) on every call but register and login. Errors are "
                "google.rpc.Status JSON with the HTTP status Envoy maps the gRPC code to."
            ),
        },
        "tags": sorted(tags, key=lambda t: t["name"]),
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearerAuth": []}],
    }


def render(descriptor_set: bytes) -> str:
    return json.dumps(build(descriptor_set), indent=2, sort_keys=False) + "\n"


def write(descriptor_set: bytes, out: Path) -> None:
    from tools.openapi_html import render_html

    out.mkdir(parents=True, exist_ok=True)
    document = build(descriptor_set)
    (out / "openapi.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "index.html").write_text(render_html(document))
