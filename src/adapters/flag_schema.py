"""flags.yaml: its schema, strict validation with messages ops can act on, and its mapping to and from Unleash's client
feature format (the body of `GET /api/client/features`).

Everything here is pure. The evaluator (`adapters.flags`) feeds `to_unleash_features` to UnleashClient; a script seeding
a real Unleash server can reuse it as is.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap

ServiceName = Literal["market_analysis", "causal_analysis", "backtesting", "analysis_coordinator"]
SERVICES: tuple[str, ...] = get_args(ServiceName)
Stickiness = Literal["request_key", "caller", "random"]
Percent = Annotated[int, Field(ge=0, le=100)]
MethodName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z0-9]*$")]


class FlagsError(ValueError):
    """Flags that cannot be used. The message starts with the source and names the offending path."""


class _StrictModel(BaseModel):
    # strict: YAML's "25" must not pass as a percent, nor 1 as a bool.
    model_config = ConfigDict(strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        # Done here rather than with extra="forbid" so the message can list the keys that are allowed.
        if isinstance(data, dict):
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                listed = ", ".join(repr(key) for key in unknown)
                raise ValueError(f"unknown key {listed}; allowed: {', '.join(cls.model_fields)}")
        return data


class MethodFlags(_StrictModel):
    grpc: Percent


class ServiceFlags(_StrictModel):
    grpc: Percent = 0
    stickiness: Stickiness = "request_key"
    shadow: Percent = 0
    methods: dict[MethodName, MethodFlags] = {}


class FlagsConfig(_StrictModel):
    kill_switch: bool = False
    services: dict[ServiceName, ServiceFlags] = Field(default={}, validate_default=True)

    @field_validator("services")
    @classmethod
    def _list_every_service(cls, services: dict[str, ServiceFlags]) -> dict[str, ServiceFlags]:
        # A service left out goes over REST, the safe default mid-migration; listing it makes `flags show` say so.
        return {name: services.get(name, ServiceFlags()) for name in SERVICES}


# Used when no flags file is found; equal to the repository's flags.yaml (a test keeps them in step).
DEFAULT_FLAGS = FlagsConfig(services={name: ServiceFlags(grpc=100) for name in SERVICES})


def parse_flags(text: str, source: str) -> FlagsConfig:
    try:
        # ruamel: YAML 1.2 (`on`/`yes` stay strings, so strict validation catches them), duplicate keys are errors,
        # and keys keep their line numbers for the messages.
        document = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise FlagsError(f"{source}: not valid YAML: {getattr(exc, 'problem', None) or exc}{where}") from None
    if document is None:
        # Also what a half-written file looks like; never read it as "all defaults".
        raise FlagsError(f"{source}: the file is empty (to send everything over REST, set kill_switch: true)")
    try:
        return FlagsConfig.model_validate(document)
    except ValidationError as exc:
        raise FlagsError("\n".join(_describe(error, document, source) for error in exc.errors())) from None


def _describe(error: Any, document: Any, source: str) -> str:
    path = ".".join(str(part) for part in error["loc"] if part != "[key]")
    line = _line_of(document, error["loc"])
    return f"{source}: {path + ': ' if path else ''}{_explain(error)}{f' (line {line})' if line else ''}"


def _explain(error: Any) -> str:
    kind, value, is_key = error["type"], error["input"], error["loc"][-1:] == ("[key]",)
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"must be between 0 and 100, got {value!r}"
    if kind == "int_type":
        return f"must be a whole number between 0 and 100, got {value!r}"
    if kind == "bool_type":
        return f"must be true or false, got {value!r}"
    if kind == "literal_error" and is_key:
        return f"unknown service; known services: {', '.join(SERVICES)}"
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}, got {value!r}"
    if kind == "string_pattern_mismatch" and is_key:
        return "not a gRPC method name: write it as in the .proto, UpperCamelCase (e.g. GetCandles)"
    if kind == "missing":
        return "required, missing"
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping of keys to values, got {value!r}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def _line_of(document: Any, loc: tuple[Any, ...]) -> int | None:
    node, line = document, None
    for part in loc:
        if not (isinstance(node, CommentedMap) and part in node):
            break
        line = node.lc.key(part)[0] + 1
        node = node[part]
    return line


# --- Unleash features ------------------------------------------------------------------------------------------------

KILL_SWITCH_FEATURE = "fxplat.kill_switch"
# The context field each stickiness hashes; the evaluator fills requestKey and caller on every call.
STICKINESS_FIELD = {"request_key": "requestKey", "caller": "caller", "random": "random"}
_STICKINESS_OF_FIELD = {field: stickiness for stickiness, field in STICKINESS_FIELD.items()}


def grpc_feature(service: str) -> str:
    return f"fxplat.grpc.{service}"


def shadow_feature(service: str) -> str:
    return f"fxplat.shadow.{service}"


def to_unleash_features(flags: FlagsConfig) -> dict[str, Any]:
    """One `fxplat.grpc.<service>` and one `fxplat.shadow.<service>` feature per service, plus the kill switch."""
    features: list[dict[str, Any]] = [
        {"name": KILL_SWITCH_FEATURE, "enabled": flags.kill_switch, "strategies": [{"name": "default"}]}
    ]
    for service, service_flags in flags.services.items():
        features.append(_grpc_feature(service, service_flags))
        features.append(_feature(shadow_feature(service), [_rollout(shadow_feature(service), service_flags.shadow)]))
    return {"version": 2, "features": features}


def _grpc_feature(service: str, flags: ServiceFlags) -> dict[str, Any]:
    # A feature is on when any strategy is. The service default excludes the overridden methods, so an override
    # decides alone for its method, whichever way it goes.
    name, overridden = grpc_feature(service), list(flags.methods)
    excluding = [_method_constraint("NOT_IN", overridden)] if overridden else []
    default = _rollout(name, flags.grpc, flags.stickiness, excluding)
    overrides = [
        _rollout(name, method_flags.grpc, flags.stickiness, [_method_constraint("IN", [method])])
        for method, method_flags in flags.methods.items()
    ]
    return _feature(name, [default, *overrides])


def _feature(name: str, strategies: list[dict[str, Any]]) -> dict[str, Any]:
    # Always enabled with explicit rollouts: an enabled feature with no strategy would be on for everyone.
    # The dependency folds the kill switch into the same evaluation (one engine call per decision), and turns
    # the feature off if the kill switch feature goes missing.
    return {
        "name": name,
        "enabled": True,
        "strategies": strategies,
        "dependencies": [{"feature": KILL_SWITCH_FEATURE, "enabled": False}],
    }


def _rollout(
    group: str, percent: int, stickiness: str = "request_key", constraints: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    # groupId = the feature name: a key lands in the same bucket under every strategy of the feature.
    parameters = {"rollout": str(percent), "stickiness": STICKINESS_FIELD[stickiness], "groupId": group}
    return {"name": "flexibleRollout", "parameters": parameters, "constraints": constraints or []}


def _method_constraint(operator: str, methods: list[str]) -> dict[str, Any]:
    return {"contextName": "method", "operator": operator, "values": methods}


def from_unleash_features(state: dict[str, Any], source: str) -> FlagsConfig:
    """The inverse of `to_unleash_features`: what a server serves, in flags.yaml terms (for `fxplat flags show`).

    Raises FlagsError for shapes flags.yaml cannot express, e.g. strategies edited by hand in the Unleash UI.
    """
    features = {feature["name"]: feature for feature in state.get("features", [])}
    try:
        services = {}
        for service in SERVICES:
            grpc, stickiness, methods = _rollouts_of(features.get(grpc_feature(service)))
            shadow, _, shadow_methods = _rollouts_of(features.get(shadow_feature(service)))
            if shadow_methods:
                raise FlagsError(f"{shadow_feature(service)}: per-method shadow strategies are not supported")
            services[service] = ServiceFlags(
                grpc=grpc,
                stickiness=stickiness,
                shadow=shadow,
                methods={method: MethodFlags(grpc=percent) for method, percent in methods.items()},
            )
        return FlagsConfig(kill_switch=_kill_switch_of(features.get(KILL_SWITCH_FEATURE)), services=services)
    except (ValueError, KeyError, TypeError) as exc:  # FlagsError and pydantic's ValidationError are ValueErrors
        raise FlagsError(f"{source}: cannot be shown as flags.yaml: {exc}") from None


def _kill_switch_of(feature: dict[str, Any] | None) -> bool:
    if feature is None:
        return True  # the gRPC and shadow features depend on it: with it missing they are all off
    if not feature["enabled"]:
        return False
    if not all(_on_for_everyone(strategy) for strategy in _active(feature)):
        raise FlagsError(f"{KILL_SWITCH_FEATURE}: must be plain on/off (one 'default' strategy, or a 100 % "
                         "flexibleRollout without constraints)")
    return True


def _on_for_everyone(strategy: dict[str, Any]) -> bool:
    # `default` is what to_unleash_features writes; a 100 % flexibleRollout is what unleash-server (7.x) adds when
    # someone turns on, in the UI, a feature that has no strategy yet.
    if strategy.get("constraints") or strategy.get("segments"):
        return False
    rollout = strategy.get("parameters", {}).get("rollout")
    return strategy["name"] == "default" or (strategy["name"] == "flexibleRollout" and str(rollout) == "100")


def _rollouts_of(feature: dict[str, Any] | None) -> tuple[int, str, dict[str, int]]:
    """(service percent, stickiness, {method: percent}) of a feature shaped like `_feature` makes it."""
    if feature is None or not feature["enabled"]:
        return 0, "request_key", {}
    name = feature["name"]
    if {"feature": KILL_SWITCH_FEATURE, "enabled": False} not in feature.get("dependencies", []):
        raise FlagsError(f"{name}: must depend on {KILL_SWITCH_FEATURE} being off")
    strategies = _active(feature)
    if not strategies:
        return 100, "request_key", {}
    defaults, overrides, stickinesses = [], {}, set()
    for strategy in strategies:
        parameters, constraints = strategy.get("parameters", {}), strategy.get("constraints", [])
        if strategy["name"] != "flexibleRollout" or strategy.get("segments"):
            raise FlagsError(f"{name}: only flexibleRollout strategies without segments, got {strategy['name']!r}")
        if parameters.get("stickiness") not in _STICKINESS_OF_FIELD:
            raise FlagsError(f"{name}: stickiness must be one of {', '.join(_STICKINESS_OF_FIELD)}")
        stickinesses.add(_STICKINESS_OF_FIELD[parameters["stickiness"]])
        percent = int(parameters["rollout"])
        operator = _method_operator(name, constraints)
        methods = constraints[0]["values"] if operator else []
        if operator == "IN":
            overrides.update(dict.fromkeys(methods, percent))
        else:
            defaults.append((percent, set(methods)))
    if len(defaults) != 1 or len(stickinesses) != 1:
        raise FlagsError(f"{name}: needs exactly one strategy without `method IN` and one stickiness for all")
    [(percent, excluded)] = defaults
    if excluded != set(overrides):
        raise FlagsError(f"{name}: the default strategy must exclude exactly the overridden methods")
    return percent, stickinesses.pop(), overrides


def _method_operator(feature: str, constraints: list[dict[str, Any]]) -> str | None:
    """None, "IN" or "NOT_IN": the one constraint flags.yaml produces is on `method`."""
    if not constraints:
        return None
    constraint, *others = constraints
    if others or constraint["contextName"] != "method" or constraint.get("inverted") or (
        constraint["operator"] not in ("IN", "NOT_IN")
    ):
        raise FlagsError(f"{feature}: the only constraint allowed is `method IN` or `method NOT_IN`")
    return constraint["operator"]


def _active(feature: dict[str, Any]) -> list[dict[str, Any]]:
    return [strategy for strategy in feature.get("strategies", []) if not strategy.get("disabled")]
