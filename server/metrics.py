"""Prometheus metrics: one registry for the process, rendered on the metrics endpoint.

A module-level registry (not prometheus_client's global one) so tests can read values and
several in-process servers in a test run don't collide on registration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_TOTAL = Counter(
    "grpc_server_handled_total", "RPCs completed, by method and status code", ["method", "code"], registry=REGISTRY
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "RPC latency in seconds, by method",
    ["method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)


def observe_rpc(method: str, code: str, seconds: float) -> None:
    RPC_TOTAL.labels(method=method, code=code).inc()
    RPC_LATENCY.labels(method=method).observe(seconds)


def render() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)
