"""A self-contained HTML reference rendered from the OpenAPI document (served at /api/docs).

No script, no CDN, no vendored UI bundle: users' machines may have no network, and a page of
plain HTML and inline CSS, generated with the document by `make proto`, is enough to read.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
header{background:#1d3557;color:#fff;padding:1rem 2rem}header p{margin:.3rem 0 0;opacity:.85}
nav{position:fixed;top:0;bottom:0;left:0;width:17rem;overflow:auto;padding:1rem;background:#eef1f5;font-size:13px}
nav a{display:block;color:#1d3557;text-decoration:none;padding:1px 0}nav h3{margin:.8rem 0 .2rem}
main{margin-left:19rem;padding:0 2rem 3rem}section.op{background:#fff;border:1px solid #d8dee4;
border-radius:6px;padding:.6rem 1rem;margin:1rem 0}code,pre{font:13px ui-monospace,monospace}
pre{background:#f3f5f7;padding:.5rem;overflow:auto;border-radius:4px}
.verb{display:inline-block;min-width:4rem;font-weight:700;text-transform:uppercase}
.get{color:#0a7c42}.post{color:#1357b5}.delete{color:#b3261e}.put,.patch{color:#8a5a00}
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #d8dee4;padding:2px 8px;text-align:left;
vertical-align:top}.muted{color:#5b6570}
"""


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema["$ref"]).rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any]) -> str:
    """A one-line type, with links to component schemas."""
    if "$ref" in schema:
        name = _ref_name(schema)
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    if "allOf" in schema:
        return type_of(schema["allOf"][0])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {type_of(schema['items'])}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of string to {type_of(schema['additionalProperties'])}"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    fmt = schema.get("format")
    return escape(f"{kind} ({fmt})" if fmt else kind)


def fields_table(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return '<p class="muted">no fields</p>'
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>{' *' if name in required else ''}</td><td>{type_of(prop)}</td>"
        f"<td>{escape(str(prop.get('description', '')))}</td></tr>"
        for name, prop in props.items()
    )
    return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"


def render_operation(path: str, verb: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="{escape(op["operationId"])}">',
        f'<h3><span class="verb {verb}">{verb}</span> <code>{escape(path)}</code></h3>',
        f"<p>{escape(op.get('description', op['summary']))}</p>",
        f'<p class="muted">gRPC <code>{escape(op["x-grpc-method"])}</code> · access: {escape(op["x-access"])}'
        f"{' (no token)' if op.get('security') == [] else ' (bearer token)'}</p>",
    ]
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td><td>{type_of(p['schema'])}</td>"
            f"<td>{escape(str(p.get('description', '')))}</td></tr>"
            for p in params
        )
        parts.append(f"<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th></th></tr>{rows}</table>")
    body = op.get("requestBody")
    if body:
        parts.append("<h4>Request body (JSON)</h4>" + fields_table(body["content"]["application/json"]["schema"]))
    rows = "".join(
        f"<tr><td>{escape(code)}</td><td>{type_of(r['content']['application/json']['schema'])}</td>"
        f"<td>{escape(r['description'])}</td></tr>"
        for code, r in op["responses"].items()
    )
    parts.append(f"<h4>Responses</h4><table>{rows}</table></section>")
    return "".join(parts)


def render_html(document: dict[str, Any]) -> str:
    info = document["info"]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for verb, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((path, verb, op))
    nav = ['<a href="openapi.json">openapi.json</a>']
    body = []
    for tag in document["tags"]:
        ops = by_tag.get(tag["name"], [])
        nav.append(f"<h3>{escape(tag['name'])}</h3>")
        nav.extend(
            f'<a href="#{escape(op["operationId"])}"><span class="verb {verb}">{verb}</span>{escape(path)}</a>'
            for path, verb, op in ops
        )
        body.append(f'<h2 id="tag-{escape(tag["name"])}">{escape(tag["name"])}</h2><p>{escape(tag["description"])}</p>')
        body.extend(render_operation(path, verb, op) for path, verb, op in ops)
    nav.append("<h3>Schemas</h3>")
    body.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        nav.append(f'<a href="#schema-{escape(name)}">{escape(name)}</a>')
        content = fields_table(schema) if schema.get("type") == "object" else f"<p>{type_of(schema)}</p>"
        desc = f"<p>{escape(schema['description'])}</p>" if schema.get("description") else ""
        body.append(f'<section class="op" id="schema-{escape(name)}"><h3>{escape(name)}</h3>{desc}{content}</section>')
    security = json.dumps(document["components"]["securitySchemes"])
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(info["title"])}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head><body>'
        f"<nav>{''.join(nav)}</nav><main><header><h1>{escape(info['title'])} ({escape(info['version'])})</h1>"
        f"<p>{escape(info['description'])}</p><p>Security schemes: <code>{escape(security)}</code>. Fields marked * "
        "are always present in answers.</p></header>"
        f"{''.join(body)}</main></body></html>\n"
    )
