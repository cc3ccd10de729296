"""The ops status page, served by the Analysis Coordinator at `/status` (data at `/status.json`): per service the gRPC
share the flags give it, the transport mix, fallbacks and latency of recent calls made through this process's
adapters, the breaker states, and the canary mismatch rate; under each service, small charts of the last hour (calls
per transport, p50/p99 per transport, transport errors and fallbacks, per minute); and the rollouts' timeline (steps,
checks, halts, rollbacks). The page polls the JSON every 2 s and redraws itself; the charts are inline SVG.

Everything comes from what the platform already keeps: the flags snapshot, the adapters' recent-call buffer, the
breaker gauge in the Prometheus registry, the canary store and the rollout store. With PROMETHEUS_URL the charts show
the whole fleet (every process Prometheus scrapes) instead of this process's own calls (fxplat.status_series).
Open like /healthz and /metrics: it shows no data.
"""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from prometheus_client import REGISTRY

from adapters import canary
from adapters.core import RECENT_CALLS
from adapters.flag_schema import SERVICES
from fxplat import status_series
from rollout import prom
from rollout.store import RolloutStore

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


def router(flags: Any, store: canary.CanaryStore | None, data_dir: Path | None = None) -> APIRouter:
    """`data_dir`: where the rollout store is (or DATABASE_URL), for the timeline; None shows no timeline."""
    api = APIRouter(include_in_schema=False)
    prometheus_url = prom.url_from_env()
    fleet = prom.Prometheus(prometheus_url) if prometheus_url else None
    rollouts = RolloutStore.for_data_dir(data_dir) if data_dir is not None else None

    @api.get("/status.json")
    async def status_json() -> dict:
        since = datetime.now(timezone.utc) - timedelta(hours=1)
        rows = canary.report(await store.comparisons(since=since)) if store is not None else []
        out = snapshot(flags, rows)
        out["series_source"], out["series"] = "this process's adapters", None
        if fleet is not None:
            try:
                out["series"] = await status_series.prometheus_series(fleet)
                out["series_source"] = f"Prometheus {fleet.url} (the whole fleet)"
            except prom.PrometheusError as exc:
                out["series_source"] = f"this process's adapters (Prometheus failed: {exc})"
        if out["series"] is None:
            out["series"] = status_series.local_series()
        out["timeline"] = await status_series.timeline(rollouts) if rollouts is not None else []
        return out

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
 tr.charts td{background:#fbfbfd;padding:4px 12px 10px} .chart{display:inline-block;margin-right:18px;vertical-align:top}
 .chart b{display:block;font-size:11px;font-weight:600;color:#556} .chart svg{background:#fff;border:1px solid #e4e6eb}
 .key{font-size:11px;color:#667} .key i{display:inline-block;width:10px;height:3px;margin:0 3px 2px 6px;vertical-align:middle}
 h2{font-size:16px;margin:20px 0 6px} #timeline svg{background:#fff;box-shadow:0 1px 2px #0002}
 #events td{font-size:12px;padding:4px 10px} .ev-rolled_back,.ev-aborted,.ev-halted{color:#c0262d} .ev-promoted{color:#17794f}
</style></head>
<body>
<h1>fxplat: REST → gRPC rollout</h1>
<div class="sub" id="sub">loading…</div>
<table><thead><tr><th>service</th><th>gRPC share (flags)</th><th>recent calls: gRPC share</th><th class="num">calls</th>
<th class="num">fallbacks</th><th class="num">errors</th><th class="num">p50 gRPC / REST ms</th><th>breakers</th>
<th>canary mismatches</th></tr></thead><tbody id="rows"></tbody></table>
<h2>Rollout timeline (last hour)</h2>
<div id="timeline">–</div>
<table id="events"><tbody></tbody></table>
<script>
const C = {grpc:'#2f6fed', rest:'#17a673', err:'#c0262d', fb:'#e08a00'};
// A small inline-SVG chart: `lines` [[values, colour, dashed]] over the hour, or stacked `bars` [[values, colour]].
function chart(title, lines, bars, keys){
  const W=230, H=56, vals=[].concat(...lines.map(l=>l[0]), ...[bars.length?bars[0][0].map((_,i)=>bars.reduce((a,b)=>a+(b[0][i]||0),0)):[]]).filter(v=>v!==null);
  const max=Math.max(1e-9, ...vals), n=(lines[0]||bars[0])[0].length, dx=W/n;
  let svg='<svg class="chart-svg" width="'+W+'" height="'+H+'" viewBox="0 0 '+W+' '+H+'">';
  if (bars.length){ for(let i=0;i<n;i++){ let y=H; for(const [v,c] of bars){ const h=(v[i]||0)/max*(H-4); if(h>0){ y-=h; svg+='<rect x="'+(i*dx).toFixed(1)+'" y="'+y.toFixed(1)+'" width="'+Math.max(1,dx-0.5).toFixed(1)+'" height="'+h.toFixed(1)+'" fill="'+c+'"/>'; } } } }
  for(const [v,c,dash] of lines){ let d='', pen='M'; v.forEach((y,i)=>{ if(y===null){pen='M';return;} const px=(i*dx+dx/2).toFixed(1), py=(H-2-y/max*(H-4)).toFixed(1);
      d+=pen+px+','+py+' '; pen='L'; svg+='<circle cx="'+px+'" cy="'+py+'" r="1.6" fill="'+c+'"/>'; });
    if(d) svg+='<path d="'+d+'" fill="none" stroke="'+c+'" stroke-width="1.5"'+(dash?' stroke-dasharray="3 2"':'')+'/>'; }
  svg+='<text x="'+(W-2)+'" y="10" font-size="9" text-anchor="end" fill="#889">'+(max>1e-6?+max.toPrecision(3):'none')+'</text></svg>';
  return '<div class="chart"><b>'+title+'</b>'+svg+'<div class="key">'+keys.map(([k,c])=>'<i style="background:'+c+'"></i>'+k).join('')+'</div></div>';
}
function charts(s){
  return chart('calls / min', [], [[s.calls.grpc, C.grpc], [s.calls.rest, C.rest]], [['gRPC',C.grpc],['REST',C.rest]])
    + chart('p50 / p99 ms', [[s.p50_ms.grpc,C.grpc,false],[s.p99_ms.grpc,C.grpc,true],[s.p50_ms.rest,C.rest,false],[s.p99_ms.rest,C.rest,true]], [], [['gRPC',C.grpc],['REST',C.rest],['p99 dashed','#fff']])
    + chart('errors, fallbacks / min', [], [[s.errors.grpc, C.err], [s.errors.rest, '#f2a0a3'], [s.fallbacks, C.fb]], [['gRPC errors',C.err],['REST errors','#f2a0a3'],['fallbacks',C.fb]]);
}
function timeline(events, now){
  if(!events.length) return '<span class="key">no rollout events in the last hour</span>';
  const W=980, lanes=[...new Set(events.map(e=>e.target))], LH=34, H=lanes.length*LH+18, t0=now-3600;
  const x=t=>((t-t0)/3600*(W-150)+140).toFixed(1);
  let svg='<svg width="'+W+'" height="'+H+'">';
  for(let m=0;m<=60;m+=10){ svg+='<text x="'+x(t0+m*60)+'" y="'+(H-4)+'" font-size="9" fill="#889" text-anchor="middle">-'+(60-m)+' min</text>'; }
  lanes.forEach((lane,k)=>{ const y0=k*LH+4, ev=events.filter(e=>e.target===lane);
    svg+='<text x="4" y="'+(y0+LH/2)+'" font-size="11" fill="#1d2330">'+lane+'</text>';
    let d=''; ev.forEach((e,i)=>{ const y=(y0+LH-6-e.percent/100*(LH-12)).toFixed(1); d+=(i?'H'+x(e.at)+' V':'M'+x(e.at)+',')+y+' '; });
    svg+='<path d="'+d+'H'+x(now)+'" fill="none" stroke="'+C.grpc+'" stroke-width="1.5"/>';
    ev.forEach(e=>{ const col=e.kind==='rolled_back'||e.kind==='aborted'||e.kind==='halted'?C.err:e.kind==='promoted'?C.rest:e.kind==='analysis'&&e.failed.length?C.fb:'#556';
      svg+='<circle class="ev ev-'+e.kind+'" cx="'+x(e.at)+'" cy="'+(y0+LH-6-e.percent/100*(LH-12)).toFixed(1)+'" r="3.5" fill="'+col+'"><title>'+e.kind+': '+e.message+'</title></circle>'; });
  });
  return svg+'</svg>';
}

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
        + '<td class="num">'+fmt(v.p50_ms.grpc)+' / '+fmt(v.p50_ms.rest)+'</td><td>'+br+'</td><td>'+mm+'</td></tr>'
        + '<tr class="charts" data-charts="'+name+'"><td colspan="9">'+charts(s.series[name])+'</td></tr>';
    }
    document.getElementById('rows').innerHTML = html;
    document.getElementById('sub').innerHTML += ' · charts: last hour of '+s.series_source;
    const now = Date.parse(s.generated_at)/1000;
    document.getElementById('timeline').innerHTML = timeline(s.timeline, now);
    document.querySelector('#events tbody').innerHTML = s.timeline.slice(-12).reverse().map(e=>'<tr data-event="'+e.kind+'" class="ev-'+e.kind+'"><td>'
      +new Date(e.at*1000).toLocaleTimeString()+'</td><td>'+e.target+'</td><td>'+e.kind+'</td><td class="num">'+e.percent+'%</td><td>'+e.message
      +(e.failed.length?' <b>failed: '+e.failed.join(', ')+'</b>':'')+'</td></tr>').join('');
  }catch(e){ document.getElementById('sub').textContent = 'status unavailable: '+e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""
