"""Putting the platform's flags on a real Unleash server, through its admin API.

`push(flags)` makes one project/environment of the server hold exactly the features `flag_schema.to_unleash_features`
defines (what the offline evaluator bootstraps from), so a Flags pointed at that server (UNLEASH_URL) answers as it
would from the same flags.yaml. From a shell, with an admin token:

    UNLEASH_ADMIN_URL=https://unleash.example UNLEASH_ADMIN_TOKEN='*:*.secret' python -m adapters.unleash_admin flags.yaml

Checked against unleash-server 7.5 (scripts/unleash_tier.sh); the endpoints are the documented admin API.
"""
from __future__ import annotations

import os
import sys
from typing import Any

import httpx

from adapters.flag_schema import KILL_SWITCH_FEATURE, FlagsConfig, grpc_feature, parse_flags, to_unleash_features

ADMIN_URL_ENV = "UNLEASH_ADMIN_URL"  # the server's base URL, without /api
ADMIN_TOKEN_ENV = "UNLEASH_ADMIN_TOKEN"
PROJECT_ENV = "UNLEASH_PROJECT"
ENVIRONMENT_ENV = "UNLEASH_ENVIRONMENT"


class UnleashAdminError(RuntimeError):
    """The server refused a change; the message names the request and quotes the server's answer."""


def _feature_type(name: str) -> str:
    # Unleash's feature types only label features in the UI; evaluation ignores them.
    if name == KILL_SWITCH_FEATURE:
        return "kill-switch"
    return "release" if name.startswith(grpc_feature("")) else "experiment"


class UnleashAdmin:
    """A small synchronous admin-API client for one project and environment (the ones the client tokens target)."""

    def __init__(self, url: str, token: str, *, project: str = "default", environment: str = "development",
                 timeout: float = 10.0) -> None:
        self.project, self.environment = project, environment
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": token}, timeout=timeout)

    @classmethod
    def from_env(cls) -> UnleashAdmin:
        try:
            url, token = os.environ[ADMIN_URL_ENV], os.environ[ADMIN_TOKEN_ENV]
        except KeyError as missing:
            raise UnleashAdminError(f"set {missing.args[0]} (admin base URL and an admin API token)") from None
        return cls(url, token, project=os.environ.get(PROJECT_ENV, "default"),
                   environment=os.environ.get(ENVIRONMENT_ENV, "development"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UnleashAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the whole state -------------------------------------------------------------------------------------------

    def push(self, flags: FlagsConfig) -> None:
        """Make the server hold `to_unleash_features(flags)`: create missing features, set each one's strategies in
        place (updated, then added, then surplus ones removed: an enabled feature is never left without strategies,
        which Unleash would read as on for everyone), add the kill-switch dependency, then turn each on or off.
        Idempotent; features the platform does not own are left alone."""
        for feature in to_unleash_features(flags)["features"]:  # the kill switch first: the others depend on it
            name = feature["name"]
            current = self.feature(name)
            if current is None:
                self._request("POST", self._features(), json={"name": name, "type": _feature_type(name)})
                current = self.feature(name) or {}
            self.set_strategies(name, feature["strategies"])
            have = [(d["feature"], d["enabled"]) for d in current.get("dependencies", [])]
            for dependency in feature.get("dependencies", []):
                if (dependency["feature"], dependency["enabled"]) not in have:
                    self._request("POST", f"{self._features()}/{name}/dependencies", json=dependency)
            if self._environment_of(current).get("enabled") != feature["enabled"]:
                self.set_enabled(name, feature["enabled"])

    # --- single changes, as an operator makes them in the UI -------------------------------------------------------

    def feature(self, name: str) -> dict[str, Any] | None:
        response = self._http.get(f"{self._features()}/{name}")
        if response.status_code == 404:
            return None
        _check(response)
        return response.json()

    def strategies(self, name: str) -> list[dict[str, Any]]:
        """The feature's strategies in this environment, each with its server-assigned `id`."""
        feature = self.feature(name)
        if feature is None:
            raise UnleashAdminError(f"{name}: no such feature in project {self.project!r}")
        return self._environment_of(feature).get("strategies", [])

    def set_strategies(self, name: str, wanted: list[dict[str, Any]]) -> None:
        existing = self.strategies(name)
        for index, strategy in enumerate(wanted):
            body = _strategy_body(strategy)
            if index < len(existing):
                if _strategy_body(existing[index]) != body or existing[index].get("disabled"):
                    self.update_strategy(name, existing[index]["id"], {**body, "disabled": False})
            else:
                self._request("POST", f"{self._environment(name)}/strategies", json=body)
        for surplus in existing[len(wanted):]:
            self.delete_strategy(name, surplus["id"])

    def update_strategy(self, name: str, strategy_id: str, strategy: dict[str, Any]) -> None:
        self._request("PUT", f"{self._environment(name)}/strategies/{strategy_id}", json=strategy)

    def delete_strategy(self, name: str, strategy_id: str) -> None:
        self._request("DELETE", f"{self._environment(name)}/strategies/{strategy_id}")

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._request("POST", f"{self._environment(name)}/{'on' if enabled else 'off'}")

    # --- plumbing --------------------------------------------------------------------------------------------------

    def _environment_of(self, feature: dict[str, Any]) -> dict[str, Any]:
        for environment in feature.get("environments", []):
            if environment["name"] == self.environment:
                return environment
        raise UnleashAdminError(f"{feature.get('name')}: no environment {self.environment!r} in project "
                                f"{self.project!r}")

    def _features(self) -> str:
        return f"/api/admin/projects/{self.project}/features"

    def _environment(self, name: str) -> str:
        return f"{self._features()}/{name}/environments/{self.environment}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return _check(self._http.request(method, path, **kwargs))


def _strategy_body(strategy: dict[str, Any]) -> dict[str, Any]:
    """What the admin API takes for a strategy, from either form (server-side strategies carry more fields)."""
    constraints = [{"contextName": c["contextName"], "operator": c["operator"], "values": c["values"]}
                   for c in strategy.get("constraints", [])]
    return {"name": strategy["name"], "parameters": strategy.get("parameters", {}), "constraints": constraints}


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise UnleashAdminError(f"{response.request.method} {response.request.url.path}: "
                                f"{response.status_code} {response.text[:500]}")
    return response


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m adapters.unleash_admin FLAGS_YAML   (env: UNLEASH_ADMIN_URL, UNLEASH_ADMIN_TOKEN,"
              " optional UNLEASH_PROJECT, UNLEASH_ENVIRONMENT)", file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as file:
            flags = parse_flags(file.read(), argv[0])
        with UnleashAdmin.from_env() as admin:
            admin.push(flags)
    except (OSError, ValueError, UnleashAdminError, httpx.HTTPError) as exc:  # FlagsError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {argv[0]} to {os.environ[ADMIN_URL_ENV]} (project {admin.project}, environment {admin.environment})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
