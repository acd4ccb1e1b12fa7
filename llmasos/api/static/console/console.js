// The llmasos web console: vanilla JS over the token-protected REST API and one event stream.
// Rule: the token lives in sessionStorage and travels only in the Authorization header (fetch, even for
// the streams), never in a URL; everything shown is set as text, never as HTML.
"use strict";

const KEY = "llmasos-token";
const $ = (sel) => document.querySelector(sel);
const state = {procs: new Map(), stats: [], ttft: [], policies: [], apps: [], current: null, streams: null};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;  // CSSOM: the page's CSP forbids style attributes
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

// -- the API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra) {
  return {Authorization: "Bearer " + sessionStorage.getItem(KEY), ...(extra || {})};
}

async function api(method, path, body, signal) {
  const init = {method, headers: headers(body === undefined ? {} : {"Content-Type": "application/json"}), signal};
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, (data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

// Read a streamed body line by line (NDJSON, server-sent events), with the token in the header.
async function lines(path, onLine, signal) {
  const r = await fetch(path, {headers: headers(), signal});
  if (!r.ok) {
    const data = await r.json().catch(() => ({}));
    throw new ApiError(r.status, (data.error && data.error.message) || `HTTP ${r.status}`);
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  }
}

async function events(onEvent, signal) {
  let kind = "message", data = "";
  await lines("/v1/console/events?interval=0.5", (line) => {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
    else if (line === "" && data) {
      onEvent(kind, JSON.parse(data));
      kind = "message";
      data = "";
    }
  }, signal);
}

// -- login ---------------------------------------------------------------------------------------------

async function login(token) {
  sessionStorage.setItem(KEY, token);
  try {
    await api("GET", "/v1/stats");
  } catch (e) {
    sessionStorage.removeItem(KEY);
    throw e;
  }
}

function showApp(on) {
  $("#login").hidden = on;
  $("#nav").hidden = !on;
  $("#logout").hidden = !on;
  if (on) tab("procs");
  else for (const t of document.querySelectorAll(".tab")) t.hidden = true;
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    await login($("#token").value.trim());
    $("#token").value = "";
    start();
  } catch (e) {
    $("#login-error").textContent = e.status === 401 ? `Login failed: ${e.message}` : `Cannot reach the daemon: ${e.message}`;
  }
});

$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  for (const c of [state.streams, state.procStreams]) if (c) c.abort();
  state.current = null;
  $("#nav-proc").disabled = true;
  showApp(false);
});

function tab(name) {
  for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== "tab-" + name;
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("active", b.dataset.tab === name);
  if (name === "model") drawCharts();
}
for (const b of document.querySelectorAll("#nav button")) b.addEventListener("click", () => tab(b.dataset.tab));

// -- the live feed -------------------------------------------------------------------------------------

async function start() {
  showApp(true);
  if (state.streams) state.streams.abort();
  state.streams = new AbortController();
  loadApps();
  const signal = state.streams.signal;
  for (;;) {
    try {
      $("#live").textContent = "live";
      await events(onEvent, signal);
      $("#live").textContent = "the daemon ended the stream; reconnecting…";
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 401) { sessionStorage.removeItem(KEY); showApp(false); $("#login-error").textContent = e.message; return; }
      $("#live").textContent = `disconnected (${e.message}); retrying…`;
    }
    await new Promise((r) => setTimeout(r, 2000));
    if (signal.aborted) return;
  }
}

function onEvent(kind, data) {
  if (kind === "hello") {
    state.procs = new Map(data.procs.map((p) => [p.pid, p]));
    state.policies = data.policies;
    state.contextWindow = data.context_window;
    addStats(data.stats);
    fillPolicies(data.stats.policy);
    renderProcs();
  } else if (kind === "procs") {
    for (const p of data.changed) state.procs.set(p.pid, p);
    for (const pid of data.gone) state.procs.delete(pid);
    renderProcs();
    if (state.current !== null && data.changed.some((p) => p.pid === state.current)) {
      renderProcHeader();
      refreshMem();
    }
  } else if (kind === "stats") {
    addStats(data);
  } else if (kind === "trace") {
    onTrace(data.lines);
  }
}

// -- processes -----------------------------------------------------------------------------------------

const age = (s) => (s < 60 ? `${s.toFixed(1)}s` : s < 3600 ? `${Math.floor(s / 60)}m${Math.floor(s % 60)}s` : `${(s / 3600).toFixed(1)}h`);

function budgetLeft(p) {
  const c = p.caps || {}, u = p.usage, out = [];
  if (c.token_budget != null) out.push(`${c.token_budget - u.prompt_tokens - u.completion_tokens} tok`);
  if (c.syscall_budget != null) out.push(`${c.syscall_budget - u.syscalls} calls`);
  if (c.time_budget != null) out.push(`${age(Math.max(0, c.time_budget - ((p.ended || Date.now() / 1000) - p.started)))}`);
  if (c.model_time_budget != null) out.push(`${Math.max(0, c.model_time_budget - u.model_time).toFixed(2)}s model`);
  return out.join(", ") || "—";
}

function ordered() {
  const procs = [...state.procs.values()].filter((p) => $("#show-ended").checked || p.ended == null);
  if (!$("#tree").checked) return procs.sort((a, b) => a.pid - b.pid).map((p) => [p, 0]);
  const kids = new Map(), pids = new Set(procs.map((p) => p.pid)), out = [];
  for (const p of procs) {
    const parent = pids.has(p.ppid) ? p.ppid : 0;
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(p);
  }
  const walk = (pid, depth) => {
    for (const p of (kids.get(pid) || []).sort((a, b) => a.pid - b.pid)) {
      out.push([p, depth]);
      if (p.pid !== pid) walk(p.pid, depth + 1);
    }
  };
  walk(0, 0);
  return out;
}

function renderProcs() {
  const body = $("#proc-table tbody"), now = Date.now() / 1000, counts = {};
  body.replaceChildren(...ordered().map(([p, depth]) => {
    counts[p.state] = (counts[p.state] || 0) + 1;
    const u = p.usage;
    const kill = el("button", {class: "kill danger", title: "kill it and its children",
      onclick: (ev) => { ev.stopPropagation(); kill(p.pid); }}, "kill");
    if (p.ended != null) kill.disabled = true;
    return el("tr", {dataset: {pid: p.pid}, onclick: () => openProc(p.pid)},
      el("td", {}, p.pid), el("td", {class: "app", style: `padding-left:${0.4 + depth * 1.2}em`}, (depth ? "└ " : "") + p.app),
      el("td", {class: "state " + p.state}, p.state), el("td", {}, p.waiting_on || ""), el("td", {}, p.priority),
      el("td", {}, `${u.prompt_tokens}/${u.completion_tokens}`), el("td", {}, u.syscalls),
      el("td", {}, age((p.ended || now) - p.started)), el("td", {}, budgetLeft(p)), el("td", {}, kill));
  }));
  $("#counts").textContent = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
}
$("#tree").addEventListener("change", renderProcs);
$("#show-ended").addEventListener("change", renderProcs);

async function kill(pid) {
  try {
    await api("DELETE", `/v1/procs/${pid}`);
  } catch (e) {
    $("#proc-error").textContent = $("#spawn-error").textContent = `kill ${pid}: ${e.message}`;
  }
}

// -- spawn, from the app's signature -------------------------------------------------------------------

async function loadApps() {
  try {
    const [apps, tools] = await Promise.all([api("GET", "/v1/console/apps"), api("GET", "/v1/tools")]);
    state.apps = apps.data;
    $("#spawn-app").replaceChildren(...state.apps.map((a) => el("option", {value: a.name}, a.name)));
    spawnFields();
    renderApps(state.apps, tools.data);
  } catch (e) {
    $("#spawn-error").textContent = `apps: ${e.message}`;
  }
}

function spawnFields() {
  const app = state.apps.find((a) => a.name === $("#spawn-app").value);
  if (!app) return;
  $("#spawn-usage").textContent = app.usage + (app.description ? " — " + app.description : "");
  $("#spawn-fields").replaceChildren(...app.params.filter((p) => p.kind !== "options").map((p) => {
    const bool = p.type === "bool", num = p.type === "int" || p.type === "float";
    const input = el("input", {"data-param": p.name, "data-kind": p.kind, "data-type": p.type,
      type: bool ? "checkbox" : p.secret ? "password" : num ? "number" : "text",
      placeholder: p.kind === "rest" ? "words, space separated" : p.default != null ? String(p.default) : p.required ? "required" : ""});
    if (num) input.step = p.type === "int" ? "1" : "any";
    if (bool && p.default === true) input.checked = true;
    if (p.required) input.required = true;
    return el("label", {}, `${p.name}${p.type ? ": " + p.type : ""} `, input);
  }));
}
$("#spawn-app").addEventListener("change", spawnFields);

$("#spawn-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#spawn-error").textContent = "";
  const body = {app: $("#spawn-app").value, args: [], kwargs: {}};
  for (const input of document.querySelectorAll("#spawn-fields input")) {
    const {param, kind, type} = input.dataset;
    if (type === "bool") { body.kwargs[param] = input.checked; continue; }
    if (input.value === "") continue;
    if (kind === "rest") body.args.push(...input.value.split(/\s+/).filter(Boolean));
    else if (kind === "positional") body.args.push(input.value);
    else body.kwargs[param] = type === "int" ? parseInt(input.value, 10) : type === "float" ? parseFloat(input.value) : input.value;
  }
  if ($("#spawn-priority").value !== "") body.priority = parseInt($("#spawn-priority").value, 10);
  if ($("#spawn-budget").value !== "") body.caps = {token_budget: parseInt($("#spawn-budget").value, 10)};
  try {
    const {pid} = await api("POST", "/v1/procs", body);
    $("#spawn-error").textContent = "";
    $("#spawn-usage").textContent = `spawned pid ${pid}`;
  } catch (e) {
    $("#spawn-error").textContent = `spawn: ${e.message}`;
  }
});

// -- one process ---------------------------------------------------------------------------------------

let traceLines = [];

function openProc(pid) {
  if (state.procStreams) state.procStreams.abort();
  state.procStreams = new AbortController();
  const signal = state.procStreams.signal;
  state.current = pid;
  $("#nav-proc").disabled = false;
  $("#output").textContent = "";
  $("#proc-error").textContent = "";
  traceLines = [];
  renderProcHeader();
  tab("proc");
  lines(`/v1/procs/${pid}/logs?follow=true`, (line) => {
    if (!line) return;
    const chunk = JSON.parse(line), span = el("span", {class: chunk.stream}, chunk.text);
    $("#output").append(span);
    $("#output").scrollTop = $("#output").scrollHeight;
  }, signal).catch((e) => { if (!signal.aborted) $("#proc-error").textContent = `output: ${e.message}`; });
  api("GET", `/v1/procs/${pid}/trace`, undefined, signal).then((d) => onTrace(d.lines, true)).catch(() => {});
  loadMem(pid, signal);
}

function renderProcHeader() {
  const p = state.procs.get(state.current);
  $("#proc-title").textContent = `[${state.current}] ${p ? p.app : ""}`;
  if (!p) return;
  $("#proc-state").textContent = p.state + (p.waiting_on ? `: ${p.waiting_on}` : "");
  $("#proc-state").className = "state " + p.state;
  $("#proc-kill").disabled = $("#proc-renice").disabled = p.ended != null;
  if (document.activeElement !== $("#proc-priority")) $("#proc-priority").value = p.priority;
  $("#proc-info").textContent = `ppid ${p.ppid} · priority ${p.priority} · args ${JSON.stringify(p.args)} · ` +
    `tokens ${p.usage.prompt_tokens}/${p.usage.completion_tokens} · budget left ${budgetLeft(p)}` +
    (p.error ? ` · error: ${p.error.split("\n").slice(-2).join(" ")}` : "");
}

$("#proc-kill").addEventListener("click", () => kill(state.current));

$("#renice-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("PUT", `/v1/procs/${state.current}/priority`, {priority: parseInt($("#proc-priority").value, 10)});
    $("#proc-error").textContent = "";
    $("#proc-priority").blur();
  } catch (e) {
    $("#proc-error").textContent = `priority: ${e.message}`;
  }
});

$("#stdin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", `/v1/procs/${state.current}/stdin`, {text: $("#stdin").value + "\n"});
    $("#stdin").value = "";
    $("#proc-error").textContent = "";
  } catch (e) {
    $("#proc-error").textContent = `stdin: ${e.message}`;
  }
});

$("#stdin-close").addEventListener("click", async () => {
  try {
    await api("POST", `/v1/procs/${state.current}/stdin`, {close: true});
  } catch (e) {
    $("#proc-error").textContent = `stdin: ${e.message}`;
  }
});

function onTrace(newLines, history) {
  if (state.current === null) return;
  const mine = newLines.filter((l) => l.startsWith(`[${state.current}] `));
  if (history) {  // the recent ones, before those the live feed brought meanwhile (which it may hold too)
    const seen = new Set(mine);
    traceLines = mine.concat(traceLines.filter((l) => !seen.has(l)));
  } else {
    traceLines = traceLines.concat(mine);
  }
  traceLines = traceLines.slice(-500);
  renderTrace();
}

function renderTrace() {
  const f = $("#trace-filter").value.trim().toLowerCase();
  $("#trace").textContent = traceLines.filter((l) => !f || l.toLowerCase().includes(f)).join("\n");
  $("#trace").scrollTop = $("#trace").scrollHeight;
}
$("#trace-filter").addEventListener("input", renderTrace);

// Reload its memory and context after a change, at most every 1.5 s (the last change is never missed).
function refreshMem() {
  if (state.memTimer || !state.procStreams) return;
  const wait = Math.max(0, 1500 - (Date.now() - (state.memAt || 0)));
  state.memTimer = setTimeout(() => {
    state.memTimer = null;
    if (state.current !== null) loadMem(state.current, state.procStreams.signal);
  }, wait);
}

async function loadMem(pid, signal) {
  state.memAt = Date.now();
  try {
    const [mem, ctx] = await Promise.all([api("GET", `/v1/procs/${pid}/mem`, undefined, signal),
      api("GET", `/v1/console/procs/${pid}/context`, undefined, signal)]);
    state.mem = mem;
    $("#ctx-text").textContent = `${ctx.tokens} of ${ctx.window} tokens, ${ctx.messages} messages`;
    $("#ctx-bar").style.width = `${Math.min(100, (100 * ctx.tokens) / Math.max(1, ctx.window))}%`;
    $("#mem-note").textContent = mem.note || "";
    renderMem();
  } catch (e) {
    if (!signal.aborted) $("#mem-note").textContent = `memory: ${e.message}`;
  }
}

function renderMem() {
  const q = $("#mem-search").value.trim().toLowerCase(), m = state.mem || {context: [], keys: {}};
  const hit = (s) => !q || String(s).toLowerCase().includes(q);
  const keys = Object.entries(m.keys).flatMap(([ns, ks]) => ks.filter(hit).map((k) => el("li", {}, el("code", {}, ns), " ", k)));
  const ctx = m.context.filter((c) => hit(c.content) || hit(c.role))
    .map((c) => el("li", {}, el("b", {}, c.role + (c.kind ? ` (${c.kind})` : "") + ": "), c.content));
  $("#mem").replaceChildren(el("h4", {}, `keys (${keys.length})`), el("ul", {}, ...keys),
    el("h4", {}, `context (${ctx.length})`), el("ul", {}, ...ctx));
}
$("#mem-search").addEventListener("input", renderMem);

// -- the model -----------------------------------------------------------------------------------------

const KEEP = 240;

function addStats(s) {
  const prev = state.stats[state.stats.length - 1];
  s.tok_s = prev && s.uptime > prev.uptime ? (s.tokens - prev.tokens) / (s.uptime - prev.uptime) : 0;
  state.stats.push(s);
  for (const t of s.ttft || []) state.ttft.push([s.time, t]);
  if (state.stats.length > KEEP) state.stats.shift();
  if (state.ttft.length > KEEP) state.ttft.shift();
  $("#model-line").textContent = `engine ${s.engine} · policy ${s.policy} · batch ${s.last_batch}/${s.max_batch} · ` +
    `${s.tok_s.toFixed(1)} tok/s · steps ${s.steps} · tokens ${s.tokens} · KV ${s.resident_tokens}/${s.max_resident_tokens}`;
  if (document.activeElement !== $("#policy") && $("#policy").value !== s.policy) fillPolicies(s.policy);
  if (!$("#tab-model").hidden) drawCharts();
}

function drawCharts() {
  const pts = (f) => state.stats.map((s) => [s.time, f(s)]);
  lineChart($("#chart-toks"), [{label: "tok/s", color: "#2a6", points: pts((s) => s.tok_s)}]);
  lineChart($("#chart-batch"), [{label: "last batch", color: "#36c", points: pts((s) => s.last_batch)}]);
  const policies = [...new Set(state.stats.map((s) => s.policy))];
  lineChart($("#chart-queue"), [
    ...policies.map((p, i) => ({label: `waiting (${p})`, color: ["#c63", "#a3c", "#3aa", "#aa3"][i % 4],
      points: state.stats.filter((s) => s.policy === p).map((s) => [s.time, s.waiting])})),
    {label: "running", color: "#36c", points: pts((s) => s.running)}]);
  lineChart($("#chart-ttft"), [{label: "TTFT", color: "#c33", points: state.ttft, dots: true}], "s");
}

function fillPolicies(current) {
  $("#policy").replaceChildren(...state.policies.map((p) => el("option", {value: p}, p)));
  $("#policy").value = current;
}

$("#policy").addEventListener("change", async () => {
  try {
    await api("PUT", "/v1/sched", {policy: $("#policy").value});
  } catch (e) {
    $("#model-line").textContent = `policy: ${e.message}`;
  }
});

// -- tools and apps ------------------------------------------------------------------------------------

function renderApps(apps, tools) {
  const json = (v) => el("pre", {class: "json"}, JSON.stringify(v, null, 2));
  const shown = (v) => (v === null ? "—" : Array.isArray(v) ? v.join(", ") || "—" : String(v));
  const params = (ps) => el("table", {class: "small"},
    el("thead", {}, el("tr", {}, ...["parameter", "kind", "type", "required", "default"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...ps.map((p) => el("tr", {}, el("td", {}, p.name), el("td", {}, p.kind), el("td", {}, p.type),
      el("td", {}, p.required ? "yes" : ""), el("td", {}, p.secret ? "***" : shown(p.default))))));
  const manifest = (m) => el("dl", {class: "manifest"},
    ...Object.entries(m).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, shown(v))]));
  $("#apps-list").replaceChildren(...apps.map((a) => el("details", {dataset: {app: a.name}},
    el("summary", {}, el("b", {}, a.name), ` ${a.usage} — ${a.description} `, el("span", {class: "muted"}, a.source)),
    params(a.params), manifest(a.manifest))));
  $("#tools-list").replaceChildren(...tools.map((t) => el("details", {dataset: {tool: t.name}},
    el("summary", {}, el("b", {}, t.name), " ", t.description), json(t.schema))));
}

// -- boot ----------------------------------------------------------------------------------------------

if (sessionStorage.getItem(KEY)) {
  login(sessionStorage.getItem(KEY)).then(start, (e) => { showApp(false); $("#login-error").textContent = e.message; });
} else {
  showApp(false);
}
