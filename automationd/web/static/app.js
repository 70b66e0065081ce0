// automationd web console: live updates and a few conveniences. Plain JavaScript, no build.
// Every page works without this file; it only keeps pages current (server-sent events from
// /runs/stream or /events/stream) and sends the trigger form without leaving the page.
// Text from the daemon is only ever put in with textContent, never as markup.
"use strict";

(function () {
  const body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // -- helpers ---------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function shortTime(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "\u2013";
  }
  function timeCell(iso) {
    const td = el("td");
    if (iso) td.appendChild(el("time", { datetime: iso }, shortTime(iso)));
    else td.textContent = "\u2013";
    return td;
  }
  function stateBadge(state) {
    return el("span", { class: "state s-" + (state || "none"), "data-state": "" }, state || "\u2013");
  }
  function duration(start, end) {
    if (!start || !end) return "\u2013";
    const s = (Date.parse(end) - Date.parse(start)) / 1000;
    if (s < 1) return Math.round(s * 1000) + "ms";
    if (s < 60) return s.toFixed(1) + "s";
    return Math.floor(s / 60) + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
  }
  const TERMINAL = new Set(["succeeded", "failed", "partial", "skipped", "cancelled",
    "previewed", "stale", "rolled_back"]);

  // -- runs tables -------------------------------------------------------------------------
  function matches(table, run) {
    for (const key of ["job", "state", "trigger"]) {
      const want = table.dataset["filter" + key[0].toUpperCase() + key.slice(1)];
      if (want && !want.split(",").includes(run[key])) return false;
    }
    return true;
  }
  function errorText(err) {
    return err ? err.kind + ": " + (err.message || "") : "";
  }
  function runRow(table, run) {
    const tr = el("tr", { id: "run-" + run.id, "data-run": run.id, class: "fresh" });
    const idCell = el("td", { class: "mono" });
    idCell.appendChild(el("a", { href: "/runs/" + encodeURIComponent(run.id) }, run.id));
    tr.appendChild(idCell);
    if (!("hideJob" in table.dataset)) {
      const jobCell = el("td");
      jobCell.appendChild(el("a", { href: "/jobs/" + encodeURIComponent(run.job) }, run.job));
      tr.appendChild(jobCell);
    }
    const st = el("td");
    st.appendChild(stateBadge(run.state));
    tr.appendChild(st);
    tr.appendChild(el("td", {}, run.trigger));
    tr.appendChild(timeCell(run.created_at));
    tr.appendChild(el("td", { "data-duration": "" }, duration(run.started_at, run.finished_at)));
    tr.appendChild(el("td", { "data-attempts": "" }, run.attempts));
    tr.appendChild(el("td", { class: "err", "data-error": "" }, errorText(run.error)));
    return tr;
  }
  function updateRow(tr, run) {
    const badge = tr.querySelector("[data-state]");
    if (badge) {
      badge.textContent = run.state;
      badge.className = "state s-" + run.state;
    }
    const set = (sel, text) => { const c = tr.querySelector(sel); if (c) c.textContent = text; };
    set("[data-attempts]", run.attempts);
    set("[data-error]", errorText(run.error));
    set("[data-duration]", duration(run.started_at, run.finished_at));
  }
  function upsertRun(run) {
    const table = document.getElementById("runs-table");
    if (table) {
      const tr = document.getElementById("run-" + run.id);
      if (tr) updateRow(tr, run);
      else if ("livePrepend" in table.dataset && matches(table, run)) {
        const tbody = table.tBodies[0];
        const empty = tbody.querySelector("tr.empty");
        if (empty) empty.remove();
        tbody.insertBefore(runRow(table, run), tbody.firstChild);
        while (tbody.rows.length > 200) tbody.deleteRow(-1);
      }
    }
    const jobRow = document.querySelector('#jobs-table tr[data-job="' + CSS.escape(run.job) + '"] [data-last]');
    if (jobRow && TERMINAL.has(run.state)) {
      jobRow.textContent = "";
      jobRow.appendChild(stateBadge(run.state));
    }
  }

  // -- the run page: re-render its body when the run or its attempts change -------------
  const runLive = document.getElementById("run-live");
  let refreshTimer = null;
  function refreshRun() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const follow = document.getElementById("follow");
      const wrap = document.getElementById("wrap");
      const keep = { follow: follow ? follow.checked : true, wrap: wrap ? wrap.checked : true };
      const resp = await fetch(location.pathname + "?fragment=1", { credentials: "same-origin" });
      if (!resp.ok) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      runLive.replaceChildren(...doc.body.childNodes);
      const f = document.getElementById("follow"), w = document.getElementById("wrap");
      if (f) f.checked = keep.follow;
      if (w) w.checked = keep.wrap;
      applyWrap();
      if (keep.follow) followLog();
    }, 300);
  }
  function followLog() {
    const logs = document.querySelectorAll(".logtext");
    if (!logs.length) return;
    const last = logs[logs.length - 1];
    last.scrollTop = last.scrollHeight;
  }
  function applyWrap() {
    const wrap = document.getElementById("wrap");
    for (const pre of document.querySelectorAll(".logtext")) {
      pre.classList.toggle("wrap", !wrap || wrap.checked);
    }
  }
  document.addEventListener("change", (ev) => {
    if (ev.target && ev.target.id === "wrap") applyWrap();
    if (ev.target && ev.target.id === "follow" && ev.target.checked) followLog();
  });

  // -- events table -----------------------------------------------------------------------
  function addEvent(ev) {
    const table = document.getElementById("events-table");
    if (!table || !("livePrepend" in table.dataset) || document.getElementById("event-" + ev.id)) return;
    const tr = el("tr", { id: "event-" + ev.id, class: "fresh" });
    tr.appendChild(el("td", { class: "mono" }, ev.id));
    tr.appendChild(el("td", { class: "name" }, ev.name));
    tr.appendChild(timeCell(ev.created_at));
    const cell = el("td");
    if (ev.payload) {
      const details = el("details");
      details.appendChild(el("summary", {}, ev.payload.length > 80 ? ev.payload.slice(0, 77) + "..." : ev.payload));
      let shown = ev.payload;
      try { shown = JSON.stringify(JSON.parse(ev.payload), null, 2); } catch (e) { /* as sent */ }
      details.appendChild(el("pre", { class: "json" }, shown + (ev.truncated ? "\n(cut; see events list)" : "")));
      cell.appendChild(details);
    } else cell.textContent = "\u2013";
    tr.appendChild(cell);
    const tbody = table.tBodies[0];
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    tbody.insertBefore(tr, tbody.firstChild);
    while (tbody.rows.length > 200) tbody.deleteRow(-1);
  }

  // -- the stream ------------------------------------------------------------------------
  const live = document.getElementById("live");
  if (body.dataset.stream && window.EventSource) {
    const sep = body.dataset.stream.includes("?") ? "&" : "?";
    const source = new EventSource(body.dataset.stream + sep + "after=" + body.dataset.after);
    source.onopen = () => { if (live) { live.textContent = "live"; live.className = "live on"; } };
    source.onerror = () => { if (live) { live.textContent = "reconnecting"; live.className = "live off"; } };
    source.addEventListener("counters", (m) => {
      const data = JSON.parse(m.data);
      for (const node of document.querySelectorAll("[data-counter]")) {
        const key = node.dataset.counter;
        if (key in data) node.textContent = data[key];
      }
    });
    source.addEventListener("runs", (m) => {
      const data = JSON.parse(m.data);
      const table = document.getElementById("runs-table");
      if (data.dropped && table && "livePrepend" in table.dataset) {
        const hint = document.getElementById("dropped-hint");
        if (hint) hint.hidden = false;
      }
      for (const run of data.runs) {
        upsertRun(run);
        if (runLive && run.id === runLive.dataset.run) refreshRun();
      }
    });
    source.addEventListener("attempts", (m) => {
      if (!runLive) return;
      const data = JSON.parse(m.data);
      if (data.attempts.some((a) => a.run_id === runLive.dataset.run)) refreshRun();
    });
    source.addEventListener("events", (m) => {
      for (const ev of JSON.parse(m.data).events) addEvent(ev);
    });
    source.addEventListener("reload", () => {
      source.close();
      const hint = document.getElementById("reload-hint");
      if (hint) hint.hidden = false;
      if (live) { live.textContent = "stale"; live.className = "live off"; }
    });
  }

  // -- forms sent without leaving the page (data-ajax) -----------------------------------
  for (const form of document.querySelectorAll("form[data-ajax]")) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById("action-result");
      const resp = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        body: new URLSearchParams(new FormData(form)),
      });
      let data = {};
      try { data = await resp.json(); } catch (e) { data = { ok: false, error: { message: resp.statusText } }; }
      if (out) {
        out.hidden = false;
        out.className = "flash " + (data.ok ? "ok" : "error");
        out.textContent = data.ok ? data.message : "Refused: " + (data.error || {}).message;
      }
      if (data.ok && data.result && data.result.id && data.result.job) upsertRun(data.result);
    });
  }

  // -- the cron preview answers while typing ---------------------------------------------
  const cronForm = document.getElementById("cron-form");
  if (cronForm) {
    let timer = null;
    cronForm.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const query = new URLSearchParams(new FormData(cronForm)).toString();
        const resp = await fetch("/cron?" + query, { credentials: "same-origin" });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.getElementById("cron-result");
        const here = document.getElementById("cron-result");
        if (fresh && here) here.replaceChildren(...fresh.childNodes);
        history.replaceState(null, "", "/cron?" + query);
      }, 400);
    });
  }

  applyWrap();
  if (runLive) followLog();
})();
