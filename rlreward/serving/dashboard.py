"""``GET /dashboard``: one self-contained HTML page (no external assets) over ``GET /v1/stats``.

The page carries the statistics of the moment it was served (embedded JSON, so it shows them with no
further request), renders them with its own script — throughput, backlog, replicas, per-step reward
distributions (p05–p95 box, median, mean, min–max whiskers), the steps' statistics and the alerts —
and refreshes them from ``/v1/stats`` every few seconds (same origin; with an API key the browser
sends the Basic credentials it asked for). Cells carry ``data-field`` and the exact value in
``data-value``; numbers are shown to 6 significant digits.
"""

from __future__ import annotations

import html
import json
from typing import Any

REFRESH_S = 5


def dashboard_html(stats: dict[str, Any], model_name: str, stats_url: str) -> str:
    """The page for ``stats`` (``GET /v1/stats``'s object); ``stats_url``: where it refreshes from."""
    data = json.dumps(stats, allow_nan=False, default=str).replace("</", "<\\/")
    return (
        _PAGE.replace("__MODEL__", html.escape(model_name))
        .replace("__URL__", json.dumps(stats_url))
        .replace("__REFRESH_MS__", str(REFRESH_S * 1000))
        .replace("__DATA__", data)
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlreward · __MODEL__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0} header span{opacity:.75}
main{padding:14px 18px} section{background:#fff;border-radius:6px;padding:10px 14px;margin-bottom:14px;
box-shadow:0 1px 2px #0002} h2{font-size:15px;margin:2px 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border-radius:6px;padding:10px 14px;
min-width:150px;box-shadow:0 1px 2px #0002}.card b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #e3e6ea;
text-align:right;font-variant-numeric:tabular-nums}th:first-child,td:first-child{text-align:left}
tr.alert td{background:#fde8e8}.bad{color:#b42318;font-weight:600}.muted{color:#667085}
svg text{font-size:11px;fill:#475467}
</style></head><body>
<header><h1>rlreward reward health</h1><span>__MODEL__</span><span id="updated"></span>
<span id="refresh" class="muted"></span></header>
<main>
<div class="cards">
 <div class="card">Throughput<b id="throughput" data-field="samples_per_s"></b><span class="muted">samples/s (1 min)</span></div>
 <div class="card">Backlog<b id="backlog" data-field="backlog_samples"></b><span class="muted">samples queued</span></div>
 <div class="card">Replicas<b id="replica-count"></b><span class="muted">reporting</span></div>
 <div class="card">Alerts<b id="alert-count"></b><span class="muted">in the ring</span></div>
 <div class="card">Step mode<b id="mode"></b><span class="muted">hints or time window</span></div>
</div>
<section><h2>Reward distribution per step</h2><svg id="dist" width="100%" height="240"></svg>
<div class="muted">box: p05–p95 · line: median · dot: mean · whiskers: min–max</div></section>
<section><h2>Steps</h2><table id="steps"><thead><tr><th>step</th><th>samples</th><th>errors</th>
<th>mean</th><th>std</th><th>p05</th><th>p50</th><th>p95</th><th>groups</th><th>zero-var groups</th>
<th>length corr</th><th>duplicates</th></tr></thead><tbody></tbody></table></section>
<section><h2>Alerts</h2><table id="alerts"><thead><tr><th>step</th><th>signal</th><th>value</th>
<th>threshold</th><th>replica</th></tr></thead><tbody></tbody></table></section>
<section><h2>Replicas</h2><table id="replicas"><thead><tr><th>replica</th><th>state</th><th>pid</th>
<th>backlog</th><th>canary runs</th><th>max |drift|</th><th>reference drift</th><th>last canary</th>
</tr></thead><tbody></tbody></table></section>
</main>
<script id="initial" type="application/json">__DATA__</script>
<script>
"use strict";
const STATS_URL = __URL__;
const FIELDS = ["samples","errors","mean","std","p05","p50","p95","groups","zero_variance_groups",
  "length_corr","duplicate_answers"];
function fmt(v){ if(v===null||v===undefined) return "—";
  if(typeof v==="number") return Number.isInteger(v)?String(v):Number(v.toPrecision(6)).toString();
  return String(v); }
function cell(tr, field, v, cls){ const td=document.createElement("td"); td.textContent=fmt(v);
  td.dataset.field=field; if(v!==null&&v!==undefined) td.dataset.value=String(v);
  if(cls) td.className=cls; tr.appendChild(td); return td; }
function rows(id){ const tb=document.querySelector("#"+id+" tbody"); tb.replaceChildren(); return tb; }
function render(stats){
  const r = stats.reward || {}; const steps = r.steps || []; const alerts = r.alerts || [];
  const canary = (r.canary||{}).replicas || []; const replicas = stats.replicas || canary;
  const tp = r.throughput || {};
  const set = (id,v)=>{ const e=document.getElementById(id); e.textContent=fmt(v);
    if(v!==null&&v!==undefined) e.dataset.value=String(v); };
  set("throughput", tp.samples_per_s);
  const backlog = stats.replicas ? stats.replicas.reduce((a,x)=>a+(x.queued_samples||x.backlog_samples||0),0)
    : tp.backlog_samples;
  set("backlog", backlog); set("replica-count", replicas.length); set("alert-count", alerts.length);
  set("mode", r.mode || (r.enabled===false ? "off" : "—"));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const bad = new Set(alerts.map(a=>a.step+":"+a.signal));
  let tb = rows("steps");
  for(const s of steps){ const tr=document.createElement("tr"); tr.dataset.step=s.step;
    if(alerts.some(a=>a.step===s.step)) tr.className="alert";
    cell(tr,"step",s.step+(s.open?" (open)":""));
    for(const f of FIELDS) cell(tr,f,s[f], bad.has(s.step+":"+(f==="errors"?"error_rate":f))?"bad":"");
    tb.appendChild(tr); }
  tb = rows("alerts");
  for(const a of alerts){ const tr=document.createElement("tr"); tr.dataset.signal=a.signal;
    cell(tr,"step",a.step); cell(tr,"signal",a.signal,"bad"); cell(tr,"value",a.value);
    cell(tr,"threshold",a.threshold); cell(tr,"replica_id",a.replica_id); tb.appendChild(tr); }
  tb = rows("replicas"); const byId = Object.fromEntries(canary.map(c=>[c.replica_id,c]));
  for(const x of replicas){ const c = byId[x.replica_id] || {}; const tr=document.createElement("tr");
    tr.dataset.replica=x.replica_id; cell(tr,"replica_id",x.replica_id);
    cell(tr,"state",x.state || (c.stale ? "stale" : "reporting")); cell(tr,"pid",x.pid);
    cell(tr,"backlog_samples",x.backlog_samples ?? x.queued_samples);
    cell(tr,"runs",c.runs); cell(tr,"max_abs_drift",c.max_abs_drift);
    cell(tr,"reference_drift",c.reference_drift);
    cell(tr,"last_t",c.last_t ? new Date(c.last_t*1000).toLocaleTimeString() : null); tb.appendChild(tr); }
  draw(steps);
}
function draw(steps){
  const svg=document.getElementById("dist"); svg.replaceChildren(); const NS="http://www.w3.org/2000/svg";
  const shown = steps.filter(s=>s.samples>0).slice(-40); if(!shown.length) return;
  const W=svg.clientWidth||800, H=240, L=60, B=22, T=10;
  const lo=Math.min(...shown.map(s=>s.min)), hi=Math.max(...shown.map(s=>s.max)), span=(hi-lo)||1;
  const y=v=>T+(H-T-B)*(1-(v-lo)/span), bw=Math.max(4,(W-L-10)/shown.length*0.6);
  const el=(tag,attrs,text)=>{ const e=document.createElementNS(NS,tag);
    for(const k in attrs) e.setAttribute(k,attrs[k]); if(text!==undefined) e.textContent=text;
    svg.appendChild(e); return e; };
  for(const v of [lo,(lo+hi)/2,hi]){ el("text",{x:4,y:y(v)+4},fmt(v));
    el("line",{x1:L,x2:W,y1:y(v),y2:y(v),stroke:"#e3e6ea"}); }
  shown.forEach((s,i)=>{ const cx=L+(i+0.5)*(W-L-10)/shown.length;
    const g=el("g",{"data-step":s.step}); const add=(tag,a)=>{const e=el(tag,a); g.appendChild(e);};
    add("line",{x1:cx,x2:cx,y1:y(s.max),y2:y(s.min),stroke:"#667085"});
    add("rect",{x:cx-bw/2,y:y(s.p95),width:bw,height:Math.max(1,y(s.p05)-y(s.p95)),fill:"#a4c8f0",stroke:"#2e6fb7"});
    add("line",{x1:cx-bw/2,x2:cx+bw/2,y1:y(s.p50),y2:y(s.p50),stroke:"#1d2330","stroke-width":2});
    add("circle",{cx:cx,cy:y(s.mean),r:3,fill:"#b42318"});
    el("text",{x:cx-6,y:H-6},String(s.step)); });
}
render(JSON.parse(document.getElementById("initial").textContent));
setInterval(()=>{ fetch(STATS_URL,{credentials:"same-origin"}).then(r=>{
    if(!r.ok) throw new Error("HTTP "+r.status); return r.json(); })
  .then(s=>{ render(s); document.getElementById("refresh").textContent=""; })
  .catch(e=>{ document.getElementById("refresh").textContent="refresh failed: "+e.message; }); },
  __REFRESH_MS__);
</script></body></html>
"""
