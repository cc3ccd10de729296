"""docs/api cannot rot: it is what scripts/gen_api_docs.py generates from the protos and the live routes, and every
example in it (curl, buf curl, fxplat call; buf curl's error details decoded by buf convert) runs green, as written,
against a platform this module starts on free loopback ports with auth on."""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import Default as default_pool

from adapters.flags import Flags
from fxplat.catalog import CATALOG, BuildContext, build_host, scopes
from transport import config
from transport.auth import AuthConfig, MintedTokens
from transport.client_factory import ClientFactory
from transport.config import Endpoint

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "api"
MARKER = re.compile(r"<!-- example: (\w+) (\w+) ([\w-]+) (ok|error) -->\n```sh\n(.*?)\n```", re.S)
TIMEOUT_S = 180


@dataclass(frozen=True)
class Example:
    page: str
    service: str
    rpc: str
    transport: str
    expect: str
    command: str

    def __str__(self) -> str:
        return f"{self.page}: {self.service}.{self.rpc} over {self.transport}"


def documented_examples() -> list[Example]:
    return [Example(page.name, *m.groups()) for page in sorted(DOCS.glob("*.md"))
            for m in MARKER.finditer(page.read_text())]


def _load_generator():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_api_docs
    finally:
        sys.path.pop(0)
    return gen_api_docs


def test_docs_are_what_the_generator_writes():
    generator = _load_generator()
    generated = generator.render_all()
    committed = {name: (DOCS / name).read_text() for name in generator.committed()}
    assert committed.keys() == generated.keys()
    stale = [name for name in generated if committed[name] != generated[name]]
    assert not stale, f"run `python scripts/gen_api_docs.py` and commit: {stale}"


def test_every_unary_rpc_has_an_example_on_each_transport():
    have = {(e.service, e.rpc, e.transport) for e in documented_examples() if e.expect == "ok"}
    for name, entry in CATALOG.items():
        service = default_pool().FindServiceByName(entry.grpc_service)
        for method in service.methods:
            if method.server_streaming or method.client_streaming:
                continue
            for transport in ("curl", "buf-curl", "fxplat"):
                assert (name, method.name, transport) in have, (name, method.name, transport)


# --- a live platform, and the examples run against it ----------------------------------------------------------------

@pytest.fixture(scope="module")
async def platform(tmp_path_factory):
    """The four services on free ports with auth on, their own data directory and flags (all gRPC)."""
    base = tmp_path_factory.mktemp("docs-platform")
    flags_file = base / "flags.yaml"
    flags_file.write_text("services:\n" + "".join(f"  {name}: {{grpc: 100}}\n" for name in CATALOG))
    auth = AuthConfig(mode="on", secret=secrets.token_hex(32))
    tokens = MintedTokens(auth.signer(), sub="docs", scopes=scopes())
    flags = Flags(flags_file, unleash_url="")
    factory = ClientFactory(token_source=tokens)
    (base / "data").mkdir()
    ctx = BuildContext(base / "data", factory, flags, auth=auth)
    hosts = {}
    try:
        for name in CATALOG:  # in dependency order: each host's endpoints are known to the next
            host = await build_host(name, ctx, "127.0.0.1", 0, 0)
            await host.start()
            ctx.endpoints[name] = Endpoint(host.rest_url, host.grpc_target)
            hosts[name] = host
        yield hosts, tokens, flags_file, base
    finally:
        for host in reversed(hosts.values()):
            await host.stop(grace=0)
        await factory.close()
        flags.close()


async def _stored_id(host, service: str, rpc: str, data: dict) -> str:
    """Store an object through the service's own method table (as a gRPC call would) and return its id."""
    method = {m.name: m for m in CATALOG[service].grpc_methods(host.impl)}[rpc]
    desc = default_pool().FindServiceByName(CATALOG[service].grpc_service).methods_by_name[rpc]
    request = json_format.ParseDict(data, message_factory.GetMessageClass(desc.input_type)())
    response = await method.call(request)
    if isinstance(response, bytes):
        response = message_factory.GetMessageClass(desc.output_type).FromString(response)
    return _find_id(json_format.MessageToDict(response, preserving_proto_field_name=True))


def _find_id(body):
    if isinstance(body, dict):
        if isinstance(body.get("id"), str):
            return body["id"]
        return next(i for i in map(_find_id, body.values()) if i)
    return None


def _live(command: str, hosts) -> str:
    """The documented command aimed at this test's ports instead of the defaults of `fxplat up`."""
    for name, host in hosts.items():
        rest, grpc = config.DEFAULT_PORTS[name]
        command = command.replace(f"http://{config.DEFAULT_HOST}:{rest}", host.rest_url)
        command = command.replace(f"{config.DEFAULT_HOST}:{grpc}", host.grpc_target)
    return command


async def _run(command: str, env: dict) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec("bash", "-c", command, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"no answer within {TIMEOUT_S} s: {command}") from None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(600)  # ~50 commands, each a process (fxplat call starts Python)
async def test_every_documented_example_runs(platform):
    if shutil.which("npx") is None or not (ROOT / "node_modules" / ".bin" / "buf").exists():
        pytest.fail("buf is not installed: run scripts/install.sh (npm install of @bufbuild/buf)")
    if shutil.which("jq") is None:
        pytest.fail("jq is not installed (apt-get install jq): the error example decodes buf curl's details with it")
    hosts, tokens, flags_file, base = platform
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{ROOT / 'node_modules' / '.bin'}:{os.environ.get('PATH', '')}",
           "TOKEN": tokens(), "FXPLAT_TOKEN": tokens(), "FXPLAT_FLAGS": str(flags_file),
           "FXPLAT_DATA_DIR": str(base / "cli"), "NO_COLOR": "1"}
    for name, host in hosts.items():
        env[f"FXPLAT_{name.upper()}_REST_URL"] = host.rest_url
        env[f"FXPLAT_{name.upper()}_GRPC_TARGET"] = host.grpc_target
    requests = yaml.safe_load((DOCS / "examples.yaml").read_text())
    fresh_backtest = {k: v for k, v in requests["backtesting"]["RunBacktest"].items() if k != "idempotency_key"}
    env["ANALYSIS_ID"] = await _stored_id(hosts["analysis_coordinator"], "analysis_coordinator", "RunAnalysis",
                                          requests["analysis_coordinator"]["RunAnalysis"])

    async def run_service(examples: list[Example]) -> list[str]:
        failures = []
        for example in examples:
            run_env = dict(env)
            if "$BACKTEST_ID" in example.command:  # a backtest of its own: DeleteBacktest consumes it
                run_env["BACKTEST_ID"] = await _stored_id(hosts["backtesting"], "backtesting", "RunBacktest",
                                                          fresh_backtest)
            code, out, err = await _run(_live(example.command, hosts), run_env)
            problem = (_check_error if example.expect == "error" else _check_ok)(example, code, out, err)
            if problem:
                failures.append(f"{example}: {problem}\n  $ {example.command}\n  exit {code}\n  "
                                f"stdout: {out[:400]}\n  stderr: {err[:400]}")
        return failures

    examples = documented_examples()
    assert len(examples) >= 3 * 15 + 3
    groups = [[e for e in examples if e.service == name] for name in CATALOG]
    results = await asyncio.gather(*(run_service(g) for g in groups), return_exceptions=True)
    for result in results:  # every group has finished (no command left running) before anything is raised
        if isinstance(result, BaseException):
            raise result
    failures = [f for group in results for f in group]
    assert not failures, "\n".join(failures)


def _check_ok(example: Example, code: int, out: str, err: str) -> str:
    if code != 0:
        return "failed"
    if out.strip():
        try:
            json.loads(out)
        except ValueError:
            return "stdout is not JSON"
    elif not (example.transport == "curl" and example.rpc.startswith("Delete")):
        return "no answer on stdout"
    return ""


def _check_error(example: Example, code: int, out: str, err: str) -> str:
    """The error example: an unknown symbol, reported with the field that is wrong on every transport."""
    try:
        if example.transport == "curl":
            body = json.loads(out)
            ok = code == 0 and body["code"] == "NOT_FOUND" and body["field_violations"][0]["field"] == "symbol"
        elif example.transport == "buf-curl":
            body = json.loads(err)
            ok = code != 0 and body["code"] == "not_found" and body["details"][0]["type"] == "google.rpc.BadRequest"
        elif example.transport == "buf-convert":  # buf curl's BadRequest, decoded to JSON
            violation = json.loads(out)["fieldViolations"][0]
            ok = code == 0 and violation["field"] == "symbol" and "NOPE" in violation["description"]
        else:
            ok = code == 2 and "NOT_FOUND [symbol]" in err
    except (ValueError, KeyError, IndexError):
        ok = False
    return "" if ok else "not the documented error"
