"""What the HTTP API declares in its OpenAPI spec: the error responses and the shared request types.

    @api.get("/v1/procs/{pid}", responses=errors(404, 422))      # + 401 and 500, which every route may send

Rule: every status a route can send is declared on it, with the ``{"error": {...}}`` body (client/wire.py);
a value the kernel would refuse is refused by the request's schema first (a range, an enum, a strict
type), so the spec says what is valid and a bad request never reaches a syscall. A check that the API
answered with 400 and a message before it moved into the schema raises ``invalid(message)``: the
validation handler (api/http.py) answers it with 400 and that message as it was; every other schema
violation is 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field
from pydantic_core import PydanticCustomError

INT64_END = 2**63  # one past the largest int64; exact as a float, so the spec's bound is the one enforced
INVALID = "invalid_arguments"  # the pydantic error type answered with 400 (InvalidArguments), not 422

Int64 = Annotated[int, Field(ge=-INT64_END, lt=INT64_END)]  # what SQLite and the journal can hold
Count = Annotated[int, Field(ge=0, lt=INT64_END)]
Pid = Annotated[int, Path(ge=0, lt=INT64_END, description="A process id (0: the root process)")]
Timeout = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="Seconds (finite); none: no limit")]


def invalid(message: str) -> PydanticCustomError:
    """A schema check's error answered with 400 InvalidArguments and message as is (see the module rule)."""
    return PydanticCustomError(INVALID, message)


# -- the error responses ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do next")
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error, not_found_error")
    code: str | None = Field(description="The llmasos error class, e.g. NoSuchProcess (RemoteClient raises it)")
    param: str | None = None


class ErrorBody(BaseModel):
    """Every error the API sends: OpenAI's error shape."""

    error: ErrorDetail


WHY: dict[int, str] = {
    400: "Invalid arguments (the message says which), or another llmasos error the caller can act on",
    401: "No bearer token, or the wrong one",
    403: "The request's process lacks a capability for it",
    404: "No such process, app or tool",
    408: "The timeout ran out before the process ended (it keeps running)",
    409: "A replayed syscall does not match its journal",
    413: "The request body is larger than the server accepts",
    422: "The request does not fit this endpoint's schema (a missing field, a wrong type, a value out of range, "
         "not JSON)",
    429: "A budget or quota is spent, or the mailbox is full",
    500: "The model failed during a step, or an internal error (the daemon's log has the traceback)",
    501: "This kernel's engine or build does not support it",
    503: "The process table is full, or the kernel is not running",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route that can send statuses; 401 and 500 are added (any route may send them)."""
    return {s: {"model": ErrorBody, "description": WHY[s]} for s in sorted({401, 500, *statuses})}


SSE = "text/event-stream"
SSE_EVENT = {"type": "object", "required": ["data"], "properties": {  # one event, as OpenAPI 3.2 models it
    "event": {"type": "string"}, "id": {"type": "string"}, "retry": {"type": "integer"},
    "data": {"type": "string", "description": "A JSON chunk, then `[DONE]`; or a JSON error, then the end"}}}


def streams(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is JSON, or a stream of media_type (server-sent events, NDJSON) when the request asks."""
    schema = SSE_EVENT if media_type == SSE else {"type": "string"}
    return {200: {"description": f"JSON, or {what}", "content": {media_type: {"schema": schema}}}}
