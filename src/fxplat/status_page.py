"""The ops status page, served by the Analysis Coordinator at `/status` (data at `/status.json`): per service the gRPC
share the flags give it, the transport mix, fallbacks and latency of recent calls made through this process's
adapters, the breaker states, and the canary mismatch rate. The page polls the JSON every 2 s and redraws itself.

Everything comes from what the process already keeps: the flags snapshot, the adapters' recent-call buffer, the
breaker gauge in the Prometheus registry and the canary store. Open like /healthz and /metrics: it shows no data.
"""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from prometheus_client import REGISTRY

from adapters import canary
from adapters.core import RECENT_CALLS
from adapters.flag_schema import SERVICES

WINDOW_S = 300  # "recent": the last five minutes
_BREAKER_NAMES = {0: "closed", 1: "half-open", 2: "open"}


def snapshot(flags: Any, canary_rows: list[canary.MethodReport]) -> dict:
    now = time.time()
    snap = flags.snapshot()
    recent: dict[str, list] = defaultdict(list)
    for record in list(RECENT_CALLS):
        if now - record.at <= WINDOW_S and record.transport:
            recent[record.service].append(record)
    breakers = _breakers()
    services = {}
    for name in SERVICES:
        svc_flags = snap.flags.services[name]
        calls = recent.get(name, [])
        mix = {t: sum(r.transport == t for r in calls) for t in ("grpc", "rest")}
        latency = {t: [r.latency_s * 1000 for r in calls if r.transport == t and r.code == "OK"]
                   for t in ("grpc", "rest")}
        rows = [r for r in canary_rows if r.service == name]
        samples = sum(r.samples for r in rows)
        services[name] = {
            "grpc_percent": 0 if snap.flags.kill_switch else svc_flags.grpc,
            "shadow_percent": svc_flags.shadow,
            "method_overrides": {m: o.grpc for m, o in svc_flags.methods.items()},
            "recent_calls": len(calls), "transport_mix": mix,
            "fallbacks": sum(bool(r.fallback_reason) for r in calls),
            "errors": sum(r.code != "OK" for r in calls),
            "p50_ms": {t: round(float(np.percentile(v, 50)), 2) if v else None for t, v in latency.items()},
            "breakers": breakers.get(name, {}),
            "canary_samples": samples,
            "canary_mismatch_rate": (sum(r.mismatches for r in rows) / samples) if samples else None,
            "canary_verdicts": {r.method: r.verdict for r in rows},
        }
    return {"generated_at": datetime.now(timezone.utc).isoformat(), "flags_source": snap.source,
            "kill_switch": snap.flags.kill_switch, "window_s": WINDOW_S, "services": services}


def _breakers() -> dict[str, dict[str, str]]:
    """service -> {caller: state} from the breaker gauge (one per calling service and target)."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for family in REGISTRY.collect():
        if family.name == "fxplat_client_breaker_state":
            for sample in family.samples:
                caller = sample.labels.get("caller") or "cli"
                out[sample.labels["service"]][caller] = _BREAKER_NAMES.get(int(sample.value), "?")
    return out


def router(flags: Any, store: canary.CanaryStore | None) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/status.json")
    async def status_json() -> dict:
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        rows = canary.report(await store.comparisons(since=since)) if store is not None else []
        return snapshot(flags, rows)

    @api.get("/status", response_class=HTMLResponse)
    async def status_page() -> str:
        return PAGE

    return api


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fxplat status</title>
<style>
 body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
 h1{font-size:20px;margin:0 0 4px} .sub{color:#667;margin-bottom:16px}
 table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:980px}
 th,td{padding:8px 12px;border-bottom:1px solid #e4e6eb;text-align:left;vertical-align:middle}
 th{background:#eef0f4;font-weight:600} .num{text-align:right;font-variant-numeric:tabular-nums}
 .bar{display:inline-block;width:140px;height:12px;background:#d9dde5;border-radius:6px;overflow:hidden;vertical-align:middle}
 .bar i{display:block;height:100%;background:#2f6fed} .mix i{background:#17a673}
 .ok{color:#17794f} .warn{color:#b26a00} .bad{color:#c0262d;font-weight:600} .kill{background:#c0262d;color:#fff;padding:2px 8px;border-radius:4px}
</style></head>
<body>
<h1>fxplat: REST → gRPC rollout</h1>
<div class="sub" id="sub">loading…</div>
<table><thead><tr><th>service</th><th>gRPC share (flags)</th><th>recent calls: gRPC share</th><th class="num">calls</th>
<th class="num">fallbacks</th><th class="num">errors</th><th class="num">p50 gRPC / REST ms</th><th>breakers</th>
<th>canary mismatches</th></tr></thead><tbody id="rows"></tbody></table>
<script>
function bar(p, cls){return '<span class="bar '+cls+'"><i style="width:'+p+'%"></i></span> '+p+'%';}
function fmt(v){return v===null||v===undefined?'–':v;}
async function refresh(){
  try{
    const s = await (await fetch('status.json',{cache:'no-store'})).json();
    document.getElementById('sub').innerHTML = 'flags from <b>'+s.flags_source+'</b>'
      + (s.kill_switch?' <span class="kill">KILL SWITCH ON: all REST</span>':'')
      + ' · recent = last '+(s.window_s/60)+' min · updated '+new Date(s.generated_at).toLocaleTimeString();
    let html='';
    for (const [name, v] of Object.entries(s.services)){
      const total = v.transport_mix.grpc + v.transport_mix.rest;
      const share = total ? Math.round(100*v.transport_mix.grpc/total) : 0;
      const br = Object.entries(v.breakers).map(([c,st])=>'<span class="'+(st==='closed'?'ok':st==='open'?'bad':'warn')+'">'+c+': '+st+'</span>').join('<br>') || '–';
      const mm = v.canary_mismatch_rate===null ? '–' : '<span class="'+(v.canary_mismatch_rate>0.01?'bad':v.canary_mismatch_rate>0?'warn':'ok')+'">'
        +(100*v.canary_mismatch_rate).toFixed(2)+'% of '+v.canary_samples+'</span>';
      const overrides = Object.entries(v.method_overrides).map(([m,p])=>m+' '+p+'%').join(', ');
      html += '<tr data-service="'+name+'"><td><b>'+name+'</b></td>'
        + '<td class="flag">'+bar(v.grpc_percent,'')+(overrides?'<br><small>'+overrides+'</small>':'')+'</td>'
        + '<td>'+(total?bar(share,'mix'):'–')+'</td><td class="num">'+total+'</td>'
        + '<td class="num">'+v.fallbacks+'</td><td class="num">'+v.errors+'</td>'
        + '<td class="num">'+fmt(v.p50_ms.grpc)+' / '+fmt(v.p50_ms.rest)+'</td><td>'+br+'</td><td>'+mm+'</td></tr>';
    }
    document.getElementById('rows').innerHTML = html;
  }catch(e){ document.getElementById('sub').textContent = 'status unavailable: '+e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
