"""A small client for Prometheus' HTTP query API (instant and range queries), as Flagger reads it."""
from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any

import httpx

URL_ENV = "PROMETHEUS_URL"


class PrometheusError(RuntimeError):
    """Prometheus could not be asked, or refused the query; the message names the query."""


def url_from_env() -> str | None:
    return os.environ.get(URL_ENV) or None


class Prometheus:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def query(self, expr: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant vector: [(labels, value)], NaN values left out."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        data = await self._get("/api/v1/query", params, expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"] if not math.isnan(float(r["value"][1]))]

    async def query_range(self, expr: str, start: datetime, end: datetime,
                          step_s: float) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """A range matrix: [(labels, [(unix time, value)])]."""
        data = await self._get("/api/v1/query_range", {"query": expr, "start": f"{start.timestamp():.3f}",
                                                       "end": f"{end.timestamp():.3f}", "step": f"{step_s:g}"}, expr)
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    async def _get(self, path: str, params: dict[str, str], expr: str) -> dict[str, Any]:
        try:
            response = await self._http.get(path, params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{self.url}: {type(exc).__name__}: {exc} (query {expr})") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url}: {body.get('errorType')}: {body.get('error')} (query {expr})")
        return body["data"]
