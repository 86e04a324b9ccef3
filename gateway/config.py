"""The Envoy configuration, built as data from a few parameters.

Envoy serves the documented /api paths by transcoding JSON to the gRPC services described in
gen/iot_api.pb (the descriptor set `make proto` builds from proto/). The same config serves
production (bind 0.0.0.0, upstream a service name) and tests (loopback, free ports).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.api.services import SERVICES

API_PACKAGE = "iot.v1"

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR = ROOT / "gen" / "iot_api.pb"
# The OpenAPI document and its HTML reference, generated beside the descriptor (tools/openapi.py).
OPENAPI_DIR = ROOT / "gen" / "openapi"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TRANSCODER = "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"
BUFFER = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"


@dataclass(frozen=True)
class GatewayConfig:
    listen_port: int
    upstream_host: str
    upstream_port: int
    listen_address: str = "0.0.0.0"  # noqa: S104 - the REST front is meant to be reachable
    admin_port: int = 0
    descriptor: Path = DESCRIPTOR
    access_log: bool = True
    # Unary calls; the /api/events/ watches stream and have no route timeout.
    request_timeout_seconds: int = 60
    max_request_bytes: int = 1024 * 1024
    # Envoy answers 431 above this; the gRPC server accepts more (server/app.py
    # MAX_METADATA_BYTES), so anything Envoy forwards reaches a handler and gets a real answer.
    max_request_headers_kb: int = 32
    max_connections: int = 50_000
    openapi_dir: Path = OPENAPI_DIR


# HTTP statuses Envoy answers by itself, and the gRPC code each corresponds to.
LOCAL_REPLY_CODES = (
    (400, 3),
    (401, 16),
    (403, 7),
    (404, 5),
    (413, 8),
    (429, 8),
    (431, 8),
    (503, 14),
    (504, 4),
)


def streaming_methods() -> list[str]:
    return [
        f"/{spec.full_name}/{method.name}"
        for spec in SERVICES
        for method in spec.descriptor.methods
        if method.server_streaming
    ]


def _error_mapper(op: str, http: int, grpc: int, runtime_key: str) -> dict[str, Any]:
    return {
        "filter": {
            "status_code_filter": {
                "comparison": {"op": op, "value": {"default_value": http, "runtime_key": runtime_key}}
            }
        },
        "body_format_override": {
            "json_format": {"code": grpc, "message": "%LOCAL_REPLY_BODY%", "details": []},
            "content_type": "application/json",
        },
    }


def local_reply_mappers() -> list[dict[str, Any]]:
    """Envoy's own error replies as the API's JSON, `code` the gRPC code the status stands for.

    Any other error is UNKNOWN (2). Not a top-level body_format: that would also wrap the files
    Envoy answers itself (static_route) in an error body.
    """
    exact = [_error_mapper("EQ", http, grpc, f"local_reply.code_{http}") for http, grpc in LOCAL_REPLY_CODES]
    return [*exact, _error_mapper("GE", 400, 2, "local_reply.code_other")]


def static_route(path: str, file: Path, content_type: str) -> dict[str, Any]:
    """A file Envoy answers itself (read when the config loads), not a call to the control plane."""
    return {
        "match": {"path": path},
        "direct_response": {"status": 200, "body": {"filename": str(file)}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": content_type}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            {"header": {"key": "cache-control", "value": "no-cache"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        ],
        # The transcoder would refuse the path (no RPC declares it: reject_unknown_method).
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": {"@type": FILTER_CONFIG, "disabled": True}
        },
    }


def build(cfg: GatewayConfig) -> dict[str, Any]:
    upstream_route = {"cluster": "control_plane", "timeout": f"{cfg.request_timeout_seconds}s"}
    stream_route = {"cluster": "control_plane", "timeout": "0s", "idle_timeout": "3600s"}
    transcoder = {
        "@type": TRANSCODER,
        "proto_descriptor": str(cfg.descriptor),
        "services": [spec.full_name for spec in SERVICES],
        "print_options": {
            "add_whitespace": False,
            # The seed's clients expect every field, e.g. {"updateAvailable": false}.
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": False,
        },
        # gRPC errors become HTTP status + JSON body {code, message, details}.
        "convert_grpc_status": True,
        "case_insensitive_enum_parsing": True,
        # A query parameter no field declares (a cache buster, a tracking tag) is ignored, as
        # HTTP clients expect; without this the call matches no RPC and answers 404.
        "ignore_unknown_query_parameters": True,
        "request_validation_options": {
            # An /api path no RPC declares is a 404 here, not a confusing gRPC error upstream.
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": False,
        },
        "max_request_body_size": cfg.max_request_bytes,
        "max_response_body_size": 16 * 1024 * 1024,
    }
    hcm: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": "rest",
        "codec_type": "AUTO",
        "generate_request_id": True,
        "use_remote_address": True,
        "max_request_headers_kb": cfg.max_request_headers_kb,
        "stream_idle_timeout": "300s",
        "route_config": {
            "name": "api",
            # Envoy's default cap on a direct response is 4 KiB; the OpenAPI document is larger.
            "max_direct_response_body_size_bytes": 4 * 1024 * 1024,
            "virtual_hosts": [
                {
                    "name": "api",
                    "domains": ["*"],
                    # The transcoder rewrites /api/... to the gRPC path (/iot.v1.Service/Method)
                    # before routing, so routes match gRPC paths; anything else is a 404.
                    "routes": [
                        static_route("/api/openapi.json", cfg.openapi_dir / "openapi.json", "application/json"),
                        static_route("/api/docs", cfg.openapi_dir / "index.html", "text/html; charset=utf-8"),
                        *({"match": {"path": path}, "route": stream_route} for path in streaming_methods()),
                        {"match": {"prefix": f"/{API_PACKAGE}."}, "route": upstream_route},
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 404, "body": {"inline_string": "not found"}},
                        },
                    ],
                }
            ],
        },
        # Envoy's own replies (unknown path, bad JSON, upstream down) are JSON like the API's,
        # with `code` the gRPC code the HTTP status stands for, as in transcoded errors.
        "local_reply_config": {"mappers": local_reply_mappers()},
        "http_filters": [
            # The transcoder streams bodies through, so an oversized one reached the gRPC server
            # and came back 429 (its RESOURCE_EXHAUSTED); the buffer filter answers 413 first.
            # It holds at most max_request_bytes per request, and bodiless GETs (the event
            # streams) pass straight through.
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {"@type": BUFFER, "max_request_bytes": cfg.max_request_bytes},
            },
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}},
        ],
    }
    if cfg.access_log:
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": FILE_LOG,
                    "log_format": {
                        "json_format": {
                            "ts": "%START_TIME%",
                            "method": "%REQ(:METHOD)%",
                            "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                            "status": "%RESPONSE_CODE%",
                            "grpc_status": "%GRPC_STATUS%",
                            "ms": "%DURATION%",
                            "request_id": "%REQ(X-REQUEST-ID)%",
                        }
                    },
                },
            }
        ]
    return {
        # A cap on open client connections, so a connection flood cannot exhaust the box.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.resource_monitors."
                        "downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": cfg.max_connections,
                    },
                }
            ]
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": cfg.admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "rest",
                    "address": {"socket_address": {"address": cfg.listen_address, "port_value": cfg.listen_port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "control_plane",
                    "type": "STRICT_DNS",
                    "connect_timeout": "2s",
                    "lb_policy": "ROUND_ROBIN",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_OPTIONS,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "control_plane",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": cfg.upstream_host,
                                                    "port_value": cfg.upstream_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }
