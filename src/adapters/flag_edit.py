"""Editing flags.yaml from the CLI: round-trip through ruamel so comments, order and layout survive, validate the result
with the same schema the evaluator uses, and replace the file atomically (write a sibling, then rename) so a running
service's watcher never reads a half-written file. An invalid edit raises FlagsError and leaves the file untouched."""
from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from adapters.flag_schema import FlagsConfig, FlagsError, parse_flags


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 120
    return yaml


def edit(path: Path, change: Callable[[CommentedMap], None]) -> FlagsConfig:
    """Apply `change` to the document, validate, write atomically; returns the flags now in the file."""
    text = path.read_text(encoding="utf-8")
    document = _yaml().load(text)
    if not isinstance(document, CommentedMap):
        raise FlagsError(f"{path}: not a mapping of flags; fix the file by hand first")
    change(document)
    out = io.StringIO()
    _yaml().dump(document, out)
    flags = parse_flags(out.getvalue(), str(path))  # refuse before touching the file
    _replace(path, out.getvalue())
    return flags


def set_service(service: str, *, grpc: int | None = None, method: str | None = None,
                shadow: int | None = None) -> Callable[[CommentedMap], None]:
    """The change: a service's gRPC percent (or one method's, with `method`) and/or its shadow percent."""

    def change(doc: CommentedMap) -> None:
        services = _child(doc, "services")
        entry = _child(services, service)
        if grpc is not None and method:
            _child(_child(entry, "methods"), method)["grpc"] = grpc
        elif grpc is not None:
            entry["grpc"] = grpc
        if shadow is not None:
            entry["shadow"] = shadow

    return change


def set_kill_switch(on: bool) -> Callable[[CommentedMap], None]:
    def change(doc: CommentedMap) -> None:
        doc["kill_switch"] = on

    return change


def _child(node: CommentedMap, key: str) -> CommentedMap:
    if node.get(key) is None:  # absent, or a key whose entries are all commented out
        node[key] = CommentedMap()
    return node[key]


def _replace(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
