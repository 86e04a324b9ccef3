"""The one place where domain errors become gRPC statuses.

Envoy's transcoder maps the status to HTTP (NOT_FOUND 404, ALREADY_EXISTS 409, ...) and, with
convert_grpc_status, turns the google.rpc.Status we attach into the JSON body
`{"code", "message", "details"}`. A RetryInfo detail carries the retry hint for 429s.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from server.core import errors

STATUS_FOR: tuple[tuple[type[errors.DomainError], grpc.StatusCode], ...] = (
    # Subclasses before their bases: Conflict is a FailedPrecondition but means "retry".
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
)


# Messages may quote the request (an id, a name); a client can make those as long as Envoy
# allows, and the message travels twice (grpc-message and the Status detail) in the trailers.
# A 30,000-character id pushed the trailers past Envoy's response header limit: a 503.
MAX_MESSAGE_CHARS = 512


def bounded(message: str) -> str:
    """The message, cut to MAX_MESSAGE_CHARS with a marker when it is longer."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


def status_code_for(error: errors.DomainError) -> grpc.StatusCode:
    for kind, code in STATUS_FOR:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rich_status(code: grpc.StatusCode, message: str, error: Exception | None = None) -> status_pb2.Status:
    status = status_pb2.Status(code=code.value[0], message=message)
    if isinstance(error, errors.ResourceExhausted) and error.retry_after is not None:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=max(1, round(error.retry_after))))
        detail = any_pb2.Any()
        detail.Pack(retry)
        status.details.append(detail)
    if isinstance(error, errors.AlreadyExists) and error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=message)
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status.details.append(detail)
    return status


def trailing_metadata(status: status_pb2.Status) -> tuple[tuple[str, str | bytes], ...]:
    return (("grpc-status-details-bin", status.SerializeToString()),)
