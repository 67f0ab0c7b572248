// The patchbay dashboard: polls dashboard/data (same origin, same credentials) and fills
// the tables. Text is only ever set as textContent: names from the config never become HTML.
"use strict";

(function () {
  const refreshMs = 1000 * Number(document.body.dataset.refreshS || 2);
  const dataUrl = new URL("dashboard/data", document.baseURI);

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function num(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toFixed(digits === undefined ? 1 : digits);
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %";
  }

  function clock(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
  }

  function errors(row, codes) {
    const td = cell(row, "");
    const names = Object.keys(codes || {});
    if (!names.length) {
      td.textContent = "none";
      td.className = "muted";
      return;
    }
    for (const name of names) {
      const span = document.createElement("span");
      span.className = "code bad";
      span.textContent = name + " ×" + codes[name];
      td.appendChild(span);
    }
  }

  function successClass(rate) {
    if (rate === null || rate === undefined) return "num";
    return "num " + (rate >= 0.99 ? "ok" : rate >= 0.9 ? "warn" : "bad");
  }

  function fill(id, items, columns, render) {
    const body = document.querySelector("#" + id + " tbody");
    const rows = [];
    for (const item of items) {
      const row = document.createElement("tr");
      render(row, item);
      rows.push(row);
    }
    if (!rows.length) {
      const row = document.createElement("tr");
      const td = cell(row, "none recorded", "empty");
      td.colSpan = columns;
      rows.push(row);
    }
    body.replaceChildren(...rows);
  }

  function stats(row, s) {
    cell(row, s.calls, "num");
    cell(row, num(s.rate_per_min, 1), "num");
    cell(row, percent(s.success_rate), successClass(s.success_rate));
    cell(row, num(s.p50_ms), "num");
    cell(row, num(s.p95_ms), "num");
    cell(row, num(s.p99_ms), "num");
    errors(row, s.errors);
  }

  function render(data) {
    document.getElementById("view").textContent = data.view;
    document.getElementById("window").textContent =
      "last " + Math.round(data.window_s / 60) + " min";
    fill("tools", data.tools, 8, (row, t) => { cell(row, t.tool); stats(row, t); });
    fill("endpoints", data.endpoints, 9, (row, e) => {
      cell(row, e.integration);
      cell(row, e.method + " " + e.path, "code");
      stats(row, e);
    });
    const breakers = [];
    const limits = [];
    for (const integ of data.integrations) {
      for (const b of integ.breakers) breakers.push(Object.assign({ name: integ.name }, b));
      for (const l of integ.rate_limits) limits.push(l);
    }
    fill("breakers", breakers, 5, (row, b) => {
      cell(row, b.name);
      cell(row, b.scope);
      cell(row, b.endpoint, "code");
      cell(row, b.state, b.state === "closed" ? "ok" : b.state === "open" ? "bad" : "warn");
      cell(row, b.open_for_s === null || b.open_for_s === undefined ? "–" : b.open_for_s + " s");
    });
    fill("limits", limits, 9, (row, l) => {
      cell(row, l.scope + (l.shared ? " (shared: your calls only)" : ""));
      cell(row, l.per_second, "num");
      cell(row, l.burst, "num");
      cell(row, num(l.rate_per_s, 2), "num");
      cell(row, percent(l.headroom), successClass(l.headroom));
      cell(row, l.waits, "num");
      cell(row, l.refused, l.refused ? "num bad" : "num");
      cell(row, l.retries, "num");
      cell(row, l.circuit_open, l.circuit_open ? "num bad" : "num");
    });
    fill("recent", data.recent, 8, (row, c) => {
      cell(row, clock(c.ts));
      cell(row, c.tool);
      cell(row, c.integration);
      cell(row, c.tenant);
      cell(row, c.outcome, c.outcome === "ok" ? "ok" : "bad");
      cell(row, c.code, "code");
      cell(row, num(c.latency_ms), "num");
      cell(row, c.attempts, "num");
    });
    fill("anomalies", data.anomalies, 7, (row, a) => {
      cell(row, clock(a.ts));
      cell(row, a.tool);
      cell(row, a.tenant);
      cell(row, a.kind);
      cell(row, a.action, a.action === "blocked" ? "bad" : "warn");
      cell(row, a.count, "num");
      cell(row, a.limit, "num");
    });
    fill("breaker_events", data.breaker_events, 4, (row, b) => {
      cell(row, clock(b.ts));
      cell(row, b.integration);
      cell(row, b.endpoint, "code");
      cell(row, b.state, b.state === "closed" ? "ok" : b.state === "open" ? "bad" : "warn");
    });
    fill("deprecations", data.deprecations, 4, (row, d) => {
      cell(row, clock(d.ts));
      cell(row, d.integration);
      cell(row, d.endpoint, "code");
      cell(row, d.words || (d.sunset ? "sunset " + d.sunset : "deprecated"), "warn");
    });
    fill("webhooks_unmatched", data.webhooks_unmatched, 4, (row, w) => {
      cell(row, clock(w.ts));
      cell(row, w.source);
      cell(row, w.type);
      cell(row, w.reason);
    });
    const status = document.getElementById("status");
    status.textContent = "updated " + clock(data.generated_at);
    status.className = "muted";
    document.body.dataset.loaded = String(data.generated_at);
  }

  async function refresh() {
    const status = document.getElementById("status");
    try {
      const answer = await fetch(dataUrl, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!answer.ok) {
        status.textContent = answer.status === 401 || answer.status === 403
          ? "not allowed (" + answer.status + "): reload and sign in again"
          : "the gateway answered " + answer.status;
        status.className = "bad";
      } else {
        render(await answer.json());
      }
    } catch (err) {
      status.textContent = "cannot reach the gateway: " + err.message;
      status.className = "bad";
    }
    setTimeout(refresh, refreshMs);
  }

  refresh();
})();
