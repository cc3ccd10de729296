"""REST client side, written once: every call goes through `call`, which applies the remaining deadline budget (as a
client timeout and as the `x-request-timeout-ms` header for the next hop), forwards the request id and trace context (in
a CLIENT span), decodes JSON with orjson and turns problem+json and connection failures into domain errors."""
from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.common import errors as E
from transport import context, errors, tracing


async def call(client: httpx.AsyncClient, method: str, path: str, *, params: dict | None = None,
               body: Any = None, headers: dict[str, str] | None = None) -> Any:
    left = context.remaining()
    if left is not None and left <= 0:
        raise E.DeadlineExceeded("deadline exceeded before the call was sent")
    timeout = context.DEFAULT_BUDGET_S if left is None else left
    hdrs = {context.TIMEOUT_HEADER: context.timeout_header(timeout), **(headers or {})}
    if rid := context.request_id.get():
        hdrs[context.REQUEST_ID_HEADER] = rid
    content = None
    if body is not None:
        content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        hdrs["content-type"] = "application/json"
    # Span named by the HTTP method alone (OpenTelemetry's rule): paths carry ids, span names must not.
    with tracing.client_span(method, "rest", {"http.request.method": method, "url.path": path}) as trace_headers:
        hdrs.update(trace_headers)
        try:
            resp = await client.request(method, path, params=_clean(params), content=content, headers=hdrs,
                                        timeout=timeout)
        except httpx.TimeoutException:
            raise E.DeadlineExceeded(f"{method} {path}: no answer within {timeout:.3f}s") from None
        except httpx.TransportError as exc:
            raise E.Unavailable(f"{method} {path}: {type(exc).__name__}: {exc or 'connection failed'}",
                                reason="CONNECTION_FAILED") from None
        if resp.status_code >= 300:  # a redirect is not an answer either: the call did not reach its handler
            try:
                body_out: Any = orjson.loads(resp.content)
            except orjson.JSONDecodeError:
                body_out = resp.text
            raise errors.from_problem(resp.status_code, body_out)
    return orjson.loads(resp.content) if resp.content else None


def _clean(params: dict | None) -> dict | None:
    return None if params is None else {k: v for k, v in params.items() if v not in (None, "")}
