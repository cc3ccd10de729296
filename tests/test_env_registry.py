"""transport.config.ENV_VARS lists every environment variable the platform reads: found by reading the source (AST),
so a variable read anywhere in src/ but missing from the registry (or registered but read nowhere) fails here, and
the manifests and docs built from the registry cannot drift from the code."""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

import click
import typer

from transport import config

SRC = Path(__file__).resolve().parents[1] / "src"
SKIP = ("forex",)  # generated code


class Unresolved(Exception):
    pass


class EnvReads:
    """Environment variables read by a set of modules: `os.environ.get/[]/in`, `os.getenv`, `env.get` on a mapping
    parameter named env, and `envvar=` options. A name passed in through a helper's parameter (config._seconds,
    auth._read_pem) is resolved at the helper's call sites; an f-string part over a `service` becomes <SERVICE>."""

    def __init__(self, files: list[Path]) -> None:
        self.trees = {path: ast.parse(path.read_text(), str(path)) for path in files}
        self.constants: dict[str, str] = {}  # module-level NAME = "literal", across modules (attribute access)
        self.module_constants: dict[Path, dict[str, str]] = {}
        self.imported: dict[Path, set[str]] = {}  # names each module takes with `from x import NAME`
        for path, tree in self.trees.items():
            self.imported[path] = {alias.asname or alias.name for node in ast.walk(tree)
                                   if isinstance(node, ast.ImportFrom) for alias in node.names}
            mine = self.module_constants[path] = {}
            for node in tree.body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                    mine[node.targets[0].id] = self.constants[node.targets[0].id] = node.value.value
        self.found: dict[str, list[str]] = {}
        self.unresolved: list[str] = []
        for path, tree in self.trees.items():
            self._scan(path, tree)

    def _scan(self, path: Path, tree: ast.AST) -> None:
        for func, node in _walk_with_function(tree):
            for expr in _env_arguments(node):
                where = f"{path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}:{node.lineno}"
                try:
                    for name in self._resolve(expr, path, func):
                        self.found.setdefault(name, []).append(where)
                except Unresolved as exc:
                    self.unresolved.append(f"{where}: {exc}")

    def _resolve(self, expr: ast.expr, path: Path, func: ast.FunctionDef | None, depth: int = 0) -> list[str]:
        if depth > 4:
            raise Unresolved("helper chain too deep")
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return [expr.value]
        if isinstance(expr, ast.Name) and expr.id in self.module_constants[path]:
            return [self.module_constants[path][expr.id]]
        if isinstance(expr, ast.Attribute) and expr.attr in self.constants:
            return [self.constants[expr.attr]]
        if isinstance(expr, ast.Name) and expr.id in self.constants and expr.id in self.imported[path]:
            return [self.constants[expr.id]]  # `from module import NAME`
        if isinstance(expr, ast.JoinedStr):
            parts = []
            for value in expr.values:
                if isinstance(value, ast.Constant):
                    parts.append([value.value])
                elif "service" in ast.unparse(value.value):
                    parts.append(["<SERVICE>"])
                else:
                    parts.append(self._resolve(value.value, path, func, depth + 1))
            return ["".join(p) for p in itertools.product(*parts)]
        if isinstance(expr, ast.Name) and func is not None:
            params = [a.arg for a in func.args.posonlyargs + func.args.args]
            if expr.id in params:
                return self._call_sites(func.name, params.index(expr.id), expr.id, depth)
        raise Unresolved(f"cannot tell which variable `{ast.unparse(expr)}` names")

    def _call_sites(self, name: str, index: int, keyword: str, depth: int) -> list[str]:
        names: list[str] = []
        for path, tree in self.trees.items():
            for func, node in _walk_with_function(tree):
                if not (isinstance(node, ast.Call) and _callee(node) == name):
                    continue
                arg = node.args[index] if index < len(node.args) else next(
                    (k.value for k in node.keywords if k.arg == keyword), None)
                if arg is not None:
                    names += self._resolve(arg, path, func, depth + 1)
        if not names:
            raise Unresolved(f"{name}() reads a variable it is given, but no call site passes one")
        return names


def _callee(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")


def _is_environ(expr: ast.expr) -> bool:
    return (isinstance(expr, ast.Name) and expr.id in ("environ", "env")) or (
        isinstance(expr, ast.Attribute) and expr.attr == "environ")


def _env_arguments(node: ast.AST) -> list[ast.expr]:
    """The expressions naming a variable this node reads, if it reads any."""
    if isinstance(node, ast.Call):
        found = [k.value for k in node.keywords if k.arg == "envvar"]
        func = node.func
        if isinstance(func, ast.Attribute) and node.args and (
                (func.attr in ("get", "pop", "setdefault") and _is_environ(func.value))
                or (func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os")):
            found.append(node.args[0])
        return found
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
        return [node.slice]
    if isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops) and any(
            _is_environ(c) for c in node.comparators):
        return [node.left]
    return []


def _walk_with_function(tree: ast.AST, func: ast.FunctionDef | None = None):
    for child in ast.iter_child_nodes(tree):
        inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
        yield inner, child
        yield from _walk_with_function(child, inner)


def platform_reads() -> EnvReads:
    files = [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] not in SKIP]
    return EnvReads(files)


def registered(name: str) -> bool:
    return name in config.env_names() or name in {v.name for v in config.ENV_VARS}


def test_every_variable_the_code_reads_is_registered():
    reads = platform_reads()
    assert not reads.unresolved, "env reads the registry test cannot follow:\n" + "\n".join(reads.unresolved)
    missing = {name: where for name, where in reads.found.items() if not registered(name)}
    assert not missing, ("read by the code but not in transport.config.ENV_VARS (add a line there): "
                         + "; ".join(f"{n} at {', '.join(w)}" for n, w in sorted(missing.items())))
    # the scan sees every kind of reader: literal, module constant, helper parameter, f-string, typer option
    for name in ("DATABASE_URL", "FXPLAT_FLAGS", "FXPLAT_GRACE_S", "FXPLAT_AUTH_PUBLIC_KEY",
                 "FXPLAT_<SERVICE>_GRPC_TARGET", "FXPLAT_LOG_FORMAT", "UNLEASH_ADMIN_URL"):
        assert name in reads.found, name


def test_every_registered_variable_is_read():
    reads = platform_reads()
    unread = [var.name for var in config.ENV_VARS
              if not var.read_by and var.name not in reads.found and not set(var.names()) & set(reads.found)]
    assert not unread, f"in transport.config.ENV_VARS but read nowhere in src/ (delete or mark read_by): {unread}"


def test_the_scan_catches_an_unregistered_read(tmp_path):
    source = tmp_path / "sneaky.py"
    source.write_text('import os\nNAME = "FXPLAT_SNEAKY"\n\ndef f(v):\n    return os.environ.get(v)\n\n'
                      'f(NAME)\nos.getenv("FXPLAT_ALSO")\n"FXPLAT_IN" in os.environ\n'
                      'x = os.environ[f"FXPLAT_{service}_PORT"]\n')
    reads = EnvReads([source])
    assert set(reads.found) == {"FXPLAT_SNEAKY", "FXPLAT_ALSO", "FXPLAT_IN", "FXPLAT_<SERVICE>_PORT"}
    assert not registered("FXPLAT_SNEAKY") and registered("FXPLAT_<SERVICE>_REST_URL")
    assert registered("FXPLAT_BACKTESTING_GRPC_TARGET")


def test_cli_options_that_read_a_variable_are_registered_and_flags_exist():
    from fxplat.cli import app

    root = typer.main.get_command(app)
    options: dict[str, set[str]] = {}  # envvar -> option strings
    all_up_options: set[str] = set()

    def visit(command: click.Command, path: str) -> None:
        for param in command.params:
            if path == "up":
                all_up_options.update(param.opts)
            for envvar in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or []):
                options.setdefault(envvar, set()).update(param.opts)
        for name, sub in getattr(command, "commands", {}).items():
            visit(sub, f"{path} {name}".strip())

    visit(root, "")
    assert {"FXPLAT_HOST", "FXPLAT_DATA_DIR", "FXPLAT_FLAGS", "FXPLAT_AUTH"} <= set(options)
    assert not [e for e in options if not registered(e)], options
    for var in config.ENV_VARS:
        if var.flag:
            assert var.flag in all_up_options, f"{var.name}: `fxplat up` has no option {var.flag}"
