// The run page. Everything from the server (and so from models) is inserted with textContent,
// never as HTML; the key stays in this page's memory.
"use strict";
const $ = (id) => document.getElementById(id);

function auth() {
  const key = $("key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...auth(), ...(options.headers || {}) } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

async function loadModels() {
  const models = await api("/v1/models");
  const select = $("model");
  select.replaceChildren();
  for (const m of models.data.filter((m) => m.kind === "rlm")) {
    const opt = document.createElement("option");
    opt.value = m.id;
    opt.textContent = m.id;
    select.appendChild(opt);
  }
}

async function loadRuns() {
  const runs = await api("/v1/runs?limit=50");
  const body = $("runs");
  body.replaceChildren();
  for (const r of runs.data) {
    const row = document.createElement("tr");
    row.className = "run";
    row.dataset.id = r.id;
    const cost = r.usage && r.usage.total ? r.usage.total.cost_usd : null;
    const took = r.finished ? (r.finished - r.created).toFixed(1) + " s" : "";
    for (const text of [r.id, r.state, r.model, r.query.slice(0, 80), cost == null ? "" : "$" + cost.toFixed(4), took]) {
      cell(row, text);
    }
    row.addEventListener("click", () => openRun(r.id));
    body.appendChild(row);
  }
}

function summary(e) {
  switch (e.type) {
    case "run_started": return (e.depth ? "child run at depth " + e.depth : "run started") + ": " + e.query.slice(0, 120);
    case "model_called": return "iteration " + e.iteration + ": " + e.model + " replied (" + e.reply.length + " chars)";
    case "cell_ran": return "iteration " + e.iteration + " cell " + e.index + (e.error ? ": error" : ": ok") + (e.stdout ? " · " + e.stdout.slice(0, 200) : "");
    case "subcall": return e.kind + " -> " + e.model + ": " + e.prompt_chars + " chars in, " + e.reply_chars + " out";
    case "limit_hit": return "limit " + e.limit + ": " + e.message;
    case "run_finished": return "finished (" + e.stop_reason + ")";
    default: return e.type;
  }
}

let following = null;

async function openRun(id) {
  if (following) following.abort();
  following = new AbortController();
  $("run").hidden = false;
  $("run-id").textContent = id;
  $("run-state").textContent = "";
  // a form POST, so a keyed server gets the key in the body (never in a URL or a cookie)
  $("trace-form").action = "/runs/" + encodeURIComponent(id) + "/trace";
  $("trace-key").value = $("key").value.trim();
  $("events").replaceChildren();
  $("answer").textContent = "(running)";
  $("answer").className = "muted";
  const res = await fetch("/v1/runs/" + encodeURIComponent(id) + "/events", { headers: auth(), signal: following.signal });
  if (!res.ok) { $("run-state").textContent = "error " + res.status; return; }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;
      const payload = JSON.parse(data);
      if (kind === "end") {
        $("run-state").textContent = payload.state || "";
        $("answer").textContent = payload.answer == null ? "(no answer)" : payload.answer;
        $("answer").className = payload.answer == null ? "error" : "";
        loadRuns().catch(() => {});
      } else {
        const li = document.createElement("li");
        li.className = "event " + kind;
        li.textContent = summary(payload);
        $("events").appendChild(li);
        $("run-state").textContent = "running";
      }
    }
  }
}

async function startRun(event) {
  event.preventDefault();
  $("status").textContent = "";
  $("status").className = "muted";
  try {
    const body = { model: $("model").value, query: $("query").value };
    const file = $("file").files[0];
    if (file) {
      $("status").textContent = "uploading…";
      const form = new FormData();
      form.append("purpose", "user_data");
      form.append("file", file);
      const up = await api("/v1/files", { method: "POST", body: form });
      body.context_file = up.id;
    }
    const run = await api("/v1/runs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("status").textContent = "started " + run.id;
    loadRuns().catch(() => {});
    openRun(run.id);
  } catch (err) {
    $("status").textContent = String(err.message || err);
    $("status").className = "error";
  }
}

$("start").addEventListener("submit", startRun);
$("refresh").addEventListener("click", () => { loadModels().catch(() => {}); loadRuns().catch(() => {}); });
loadModels().catch((e) => { $("status").textContent = String(e.message || e); });
loadRuns().catch(() => {});
