// corral's web dashboard (docs/web.md). No framework, no build step, no network but
// the dashboard's own origin: one Server-Sent Events stream (/api/stream) brings the
// process table, the events and the selected app's log lines; actions are POSTs to
// /api/action. Every text from the daemon goes into the page as text, never as HTML.
"use strict";

(() => {
  const HISTORY_MS = 300000;
  const MAX_LINES = 3000;
  const SPARK_SLOTS = 30;
  const $ = (id) => document.getElementById(id);

  const ui = {
    apps: [],            // rows of the last state
    history: new Map(),  // pm_id -> [[t ms, cpu, memory], ...]
    events: [],
    selected: null,      // the app whose log and details are shown
    instance: null,      // the pm_id whose details are shown
    structure: "",
    cells: new Map(),    // pm_id -> cells of its row; "app:" + name -> cells of the app row
    source: null,
    lines: [],           // {pm_id, type, line, past} of the log panel
    paused: [],
    tab: "logs",
    describeKey: "",
    pending: null,       // the action waiting for its confirmation
  };

  // ---- helpers ---------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function bytes(value) {
    let size = value;
    for (const unit of ["b", "kb", "mb", "gb"]) {
      if (size < 1024 || unit === "gb") return unit === "b" ? `${Math.round(size)}b` : `${size.toFixed(1)}${unit}`;
      size /= 1024;
    }
    return "";
  }

  function duration(ms) {
    const s = Math.max(ms / 1000, 0);
    if (s < 60) return `${Math.floor(s)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m`;
    if (s < 86400) return `${Math.floor(s / 3600)}h`;
    return `${Math.floor(s / 86400)}D`;
  }

  function clock(seconds) {
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return d.toDateString() === new Date().toDateString() ? time
      : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function statusClass(status) {
    return "status s-" + String(status).replace(/\s+/g, "-");
  }

  const SVG = "http://www.w3.org/2000/svg";

  function sparkline() {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 80 18");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.append(document.createElementNS(SVG, "polyline"));
    return svg;
  }

  function drawSpark(svg, points) {
    // the samples of the last minutes, evenly spaced and right-aligned (at least
    // SPARK_SLOTS slots, so that a fresh page does not stretch three samples)
    const line = svg.firstChild;
    if (!points.length) { line.setAttribute("points", ""); return; }
    const top = Math.max(...points.map((p) => p[1]), 1e-9);
    const slots = Math.max(points.length, SPARK_SLOTS) - 1;
    const first = slots - (points.length - 1);
    line.setAttribute("points", points.map(([, v], i) => {
      const x = ((first + i) / slots) * 80;
      const y = 17 - (v / top) * 16;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" "));
  }

  function series(ids, index) {
    // the sum over ids of one column of the history, by time (an app's instances)
    const sums = new Map();
    for (const id of ids) {
      for (const point of ui.history.get(id) || []) {
        const t = Math.round(point[0] / 1000) * 1000;
        sums.set(t, (sums.get(t) || 0) + point[index]);
      }
    }
    return [...sums.entries()].sort((a, b) => a[0] - b[0]);
  }

  function toast(text, error) {
    const box = $("toast");
    box.textContent = text;
    box.className = error ? "toast error" : "toast";
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, error ? 12000 : 6000);
  }

  function setConn(kind, text) {
    const conn = $("conn");
    conn.className = `conn conn-${kind}`;
    conn.textContent = text;
  }

  // ---- the live stream ---------------------------------------------------------

  function connect() {
    if (ui.source) ui.source.close();
    const url = "/api/stream" + (ui.selected ? `?log=${encodeURIComponent(ui.selected)}` : "");
    const source = new EventSource(url);
    ui.source = source;
    source.addEventListener("hello", (m) => {
      const data = JSON.parse(m.data);
      const d = data.daemon;
      $("daemon").textContent = `${d.host} · corral ${d.version} · daemon pid ${d.pid} · ${d.home}`;
      ui.history = new Map();
      for (const [id, points] of Object.entries(data.history)) {
        ui.history.set(Number(id), points.map(([t, c, mem]) => [t * 1000, c, mem]));
      }
      ui.events = data.events;
      renderEvents();
      onState(data, false);
      setConn("live", "live");
      $("banner").hidden = true;
    });
    source.addEventListener("state", (m) => onState(JSON.parse(m.data), true));
    source.addEventListener("events", (m) => {
      ui.events = ui.events.concat(JSON.parse(m.data)).slice(-500);
      renderEvents();
    });
    source.addEventListener("past", (m) => {
      const data = JSON.parse(m.data);
      if (data.app !== ui.selected) return;
      ui.lines = [];
      $("log-lines").replaceChildren();
      addLines(data.lines.map((l) => Object.assign(l, { past: true })));
    });
    source.addEventListener("log", (m) => {
      const data = JSON.parse(m.data);
      if ($("log-pause").checked) ui.paused.push(...data.lines);
      else addLines(data.lines);
      if (data.dropped) addLines([{ pm_id: "-", type: "err", line: `… ${data.dropped} lines not shown (the page was too slow)` }]);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setConn("down", "disconnected");
        fetch("/api/state").then((r) => {
          if (r.status === 401) {
            const banner = $("banner");
            banner.textContent = "The access token is missing or was changed (corral web --rotate): open the URL that `corral web --url` prints.";
            banner.hidden = false;
          } else {
            setTimeout(connect, 2000);
          }
        }).catch(() => setTimeout(connect, 2000));
      } else {
        setConn("wait", "reconnecting…");
      }
    };
  }

  function onState(data, sample) {
    ui.apps = data.apps;
    const now = data.at * 1000;
    const live = new Set();
    for (const row of ui.apps) {
      live.add(row.pm_id);
      if (!ui.history.has(row.pm_id)) ui.history.set(row.pm_id, []);
      const points = ui.history.get(row.pm_id);
      if (sample) points.push([now, row.cpu, row.memory]);
      while (points.length && points[0][0] < now - HISTORY_MS) points.shift();
    }
    for (const id of [...ui.history.keys()]) if (!live.has(id)) ui.history.delete(id);
    renderTable();
    if (ui.selected && !ui.apps.some((a) => a.name === ui.selected)) select(null);
    else if (ui.selected) renderPicker();
    if (ui.selected && ui.tab === "details") loadDetails(false);
  }

  // ---- the process table -----------------------------------------------------------

  function groups() {
    // namespace -> app name -> rows, namespaces by name (default first), apps by first id
    const byNs = new Map();
    for (const row of ui.apps) {
      if (!byNs.has(row.namespace)) byNs.set(row.namespace, new Map());
      const apps = byNs.get(row.namespace);
      if (!apps.has(row.name)) apps.set(row.name, []);
      apps.get(row.name).push(row);
    }
    const names = [...byNs.keys()].sort((a, b) => (a === "default" ? -1 : b === "default" ? 1 : a.localeCompare(b)));
    return names.map((ns) => [ns, [...byNs.get(ns).entries()]]);
  }

  function actionButtons(target, label, actions) {
    const cell = el("td", { class: "actions" });
    for (const action of actions) {
      cell.append(el("button", {
        type: "button", class: `act act-${action}`, "data-action": action, "data-target": target,
        onclick: () => ask(action, target, label),
      }, action));
    }
    return cell;
  }

  function renderTable() {
    const grouped = groups();
    const structure = JSON.stringify(grouped.map(([ns, apps]) => [ns, apps.map(([name, rows]) => [name, rows.map((r) => r.pm_id)])]));
    $("empty").hidden = ui.apps.length > 0;
    if (structure !== ui.structure) {
      ui.structure = structure;
      ui.cells = new Map();
      const body = $("rows");
      body.replaceChildren();
      for (const [ns, apps] of grouped) {
        body.append(el("tr", { class: "ns" }, el("th", { colspan: 11 }, `namespace ${ns}`)));
        for (const [name, rows] of apps) {
          const cells = {
            status: el("td"), restarts: el("td", { class: "num" }),
            cpu: el("span"), cpuSpark: sparkline(), memory: el("span"), memSpark: sparkline(),
            health: el("td"),
          };
          ui.cells.set(`app:${name}`, cells);
          const label = `${name} (${rows.length === 1 ? "1 instance" : `all ${rows.length} instances`})`;
          body.append(el("tr", { class: "app", "data-app": name },
            el("td", { class: "num muted" }, rows.length > 1 ? `×${rows.length}` : ""),
            el("td", { class: "name", title: "show its log and details", onclick: () => select(name) }, name),
            cells.status, el("td"), el("td"), cells.restarts,
            el("td", {}, el("span", { class: "metric" }, cells.cpu, cells.cpuSpark)),
            el("td", {}, el("span", { class: "metric" }, cells.memory, cells.memSpark)),
            cells.health, el("td", {}, rows[0].exec_mode),
            actionButtons(name, label, ["restart", "reload", "stop", "start", "scale"])));
          for (const row of rows) {
            const c = {
              status: el("span"), pid: el("td", { class: "num pid" }), uptime: el("td", { class: "num uptime" }),
              restarts: el("td", { class: "num restarts" }), cpu: el("span"), cpuSpark: sparkline(),
              memory: el("span"), memSpark: sparkline(), health: el("td", { class: "health" }),
            };
            ui.cells.set(row.pm_id, c);
            body.append(el("tr", { class: "inst", "data-pm-id": row.pm_id, "data-app": name },
              el("td", { class: "num" }, row.pm_id),
              el("td", { class: "name" }, `${name} #${row.instance_index}`),
              el("td", { class: "status-cell" }, c.status), c.pid, c.uptime, c.restarts,
              el("td", { class: "cpu" }, el("span", { class: "metric" }, c.cpu, c.cpuSpark)),
              el("td", { class: "memory" }, el("span", { class: "metric" }, c.memory, c.memSpark)),
              c.health, el("td", {}, row.exec_mode),
              actionButtons(String(row.pm_id), `${name} #${row.instance_index} (id ${row.pm_id})`, ["restart", "stop", "start"])));
          }
        }
      }
      for (const tr of document.querySelectorAll("tr.app")) tr.classList.toggle("selected", tr.dataset.app === ui.selected);
    }
    for (const [, apps] of grouped) {
      for (const [name, rows] of apps) {
        for (const row of rows) {
          const c = ui.cells.get(row.pm_id);
          c.status.className = statusClass(row.status);
          c.status.textContent = row.status;
          c.status.title = row.reason || "";
          c.pid.textContent = row.pid || "–";
          c.uptime.textContent = row.pid ? duration(row.uptime_ms) : "–";
          c.restarts.textContent = row.restarts;
          c.cpu.textContent = `${row.cpu.toFixed(1)}%`;
          c.memory.textContent = bytes(row.memory);
          c.health.textContent = row.health || (row.health_checked ? "…" : "–");
          const points = ui.history.get(row.pm_id) || [];
          drawSpark(c.cpuSpark, points.map((p) => [p[0], p[1]]));
          drawSpark(c.memSpark, points.map((p) => [p[0], p[2]]));
        }
        const a = ui.cells.get(`app:${name}`);
        const counts = new Map();
        for (const row of rows) counts.set(row.status, (counts.get(row.status) || 0) + 1);
        a.status.replaceChildren(...[...counts.entries()].map(([status, n]) =>
          el("span", { class: statusClass(status) }, rows.length > 1 ? `${n} ${status}` : status)));
        a.restarts.textContent = rows.reduce((s, r) => s + r.restarts, 0);
        a.cpu.textContent = `${rows.reduce((s, r) => s + r.cpu, 0).toFixed(1)}%`;
        a.memory.textContent = bytes(rows.reduce((s, r) => s + r.memory, 0));
        const checked = rows.filter((r) => r.health_checked);
        a.health.textContent = checked.length ? (checked.some((r) => r.health === "unhealthy") ? "unhealthy" : checked.every((r) => r.health === "healthy") ? "healthy" : "…") : "–";
        const ids = rows.map((r) => r.pm_id);
        drawSpark(a.cpuSpark, series(ids, 1));
        drawSpark(a.memSpark, series(ids, 2));
      }
    }
  }

  // ---- actions -----------------------------------------------------------------------

  function ask(action, target, label) {
    ui.pending = { action, target };
    const verbs = { restart: "Restart", reload: "Reload", stop: "Stop", start: "Start", scale: "Scale" };
    $("confirm-text").textContent = action === "scale" ? `Scale ${label} to:`
      : `${verbs[action]} ${label}?`;
    $("scale-row").hidden = action !== "scale";
    $("confirm-ok").textContent = verbs[action];
    $("confirm").showModal();
    if (action === "scale") $("scale-count").select();
  }

  async function confirmed() {
    const pending = ui.pending;
    $("confirm").close();
    if (!pending) return;
    ui.pending = null;
    const body = { action: pending.action, target: pending.target };
    if (pending.action === "scale") body.count = $("scale-count").value.trim();
    const buttons = document.querySelectorAll("button.act");
    buttons.forEach((b) => { b.disabled = true; });
    toast(`${pending.action} ${pending.target}…`, false);
    try {
      const res = await fetch("/api/action", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      const text = await res.text();
      let data;
      try { data = JSON.parse(text); } catch (e) { data = { ok: false, error: text.trim() || `HTTP ${res.status}` }; }
      toast(data.ok ? data.message : `${pending.action} ${pending.target} failed: ${data.error}`, !data.ok);
    } catch (e) {
      toast(`${pending.action} ${pending.target} failed: ${e}`, true);
    } finally {
      document.querySelectorAll("button.act").forEach((b) => { b.disabled = false; });
    }
  }

  // ---- the selected app: log and details -------------------------------------------

  function select(name) {
    ui.selected = name;
    ui.lines = [];
    ui.paused = [];
    ui.describeKey = "";
    $("log-lines").replaceChildren();
    $("describe").replaceChildren();
    for (const tr of document.querySelectorAll("tr.app")) tr.classList.toggle("selected", tr.dataset.app === name);
    $("detail").hidden = !name;
    if (name) {
      $("detail-title").textContent = name;
      const rows = ui.apps.filter((a) => a.name === name);
      ui.instance = rows.length ? rows[0].pm_id : null;
      renderPicker();
      if (ui.tab === "details") loadDetails(true);
    }
    connect();
  }

  function renderPicker() {
    const rows = ui.apps.filter((a) => a.name === ui.selected);
    if (!rows.some((r) => r.pm_id === ui.instance)) ui.instance = rows.length ? rows[0].pm_id : null;
    const picker = $("instance-picker");
    const key = rows.map((r) => r.pm_id).join(",") + "|" + ui.instance;
    if (picker.dataset.key === key) return;
    picker.dataset.key = key;
    picker.replaceChildren();
    if (rows.length > 1) {
      picker.append(el("span", { class: "muted" }, "details of "));
      for (const row of rows) {
        picker.append(el("button", {
          type: "button", class: row.pm_id === ui.instance ? "tab active" : "tab",
          onclick: () => { ui.instance = row.pm_id; renderPicker(); showTab("details"); },
        }, `id ${row.pm_id}`));
      }
    }
  }

  function showTab(tab) {
    ui.tab = tab;
    $("tab-logs").classList.toggle("active", tab === "logs");
    $("tab-details").classList.toggle("active", tab === "details");
    $("tab-logs").setAttribute("aria-selected", String(tab === "logs"));
    $("tab-details").setAttribute("aria-selected", String(tab === "details"));
    $("pane-logs").hidden = tab !== "logs";
    $("pane-details").hidden = tab !== "details";
    if (tab === "details") loadDetails(true);
  }

  async function loadDetails(force) {
    const row = ui.apps.find((a) => a.pm_id === ui.instance);
    if (!row) return;
    const key = `${row.pm_id}|${row.pid}|${row.status}|${row.restarts}|${row.health}`;
    if (!force && key === ui.describeKey) return;
    ui.describeKey = key;
    const res = await fetch(`/api/describe?id=${row.pm_id}`);
    if (!res.ok) return;
    const data = await res.json();
    if (data.pm_id !== ui.instance) return;
    $("describe").replaceChildren(...data.fields.flatMap(([k, v]) =>
      [el("dt", {}, k), el("dd", {}, v === null || v === "" ? "–" : String(v))]));
  }

  function matches(line, query) {
    return !query || line.line.toLowerCase().includes(query);
  }

  function visible(line) {
    return (line.type === "err" ? $("log-err").checked : $("log-out").checked)
      && matches(line, $("log-search").value.trim().toLowerCase());
  }

  function fillLine(node, line) {
    const query = $("log-search").value.trim().toLowerCase();
    const text = line.line;
    const parts = [el("span", { class: "id" }, `${line.pm_id}|${line.type}`)];
    if (query) {
      let at = 0;
      const lower = text.toLowerCase();
      for (let i = lower.indexOf(query); i >= 0; i = lower.indexOf(query, at)) {
        parts.push(text.slice(at, i), el("mark", {}, text.slice(i, i + query.length)));
        at = i + query.length;
      }
      parts.push(text.slice(at));
    } else {
      parts.push(text);
    }
    node.replaceChildren(...parts);
    node.classList.toggle("hidden", !visible(line));
  }

  function addLines(lines) {
    if (!lines.length) return;
    const box = $("log-lines");
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    for (const line of lines) {
      ui.lines.push(line);
      const node = el("div", { class: `line ${line.type}${line.past ? " past" : ""}` });
      line.node = node;
      fillLine(node, line);
      box.append(node);
    }
    while (ui.lines.length > MAX_LINES) ui.lines.shift().node.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
    countLines();
  }

  function refilter() {
    for (const line of ui.lines) fillLine(line.node, line);
    countLines();
    const box = $("log-lines");
    box.scrollTop = box.scrollHeight;
  }

  function countLines() {
    const shown = ui.lines.filter(visible).length;
    const lines = (n) => (n === 1 ? "1 line" : `${n} lines`);
    $("log-count").textContent = shown === ui.lines.length ? lines(shown) : `${shown} of ${lines(ui.lines.length)}`;
  }

  // ---- events ------------------------------------------------------------------------

  function renderEvents() {
    const list = $("events");
    $("no-events").hidden = ui.events.length > 0;
    list.replaceChildren(...ui.events.slice().reverse().map((e) => el("li", { class: `ev k-${e.kind}`, "data-seq": e.seq, "data-kind": e.kind, "data-app": e.name },
      el("span", { class: "when" }, clock(e.at)),
      el("span", { class: "kind" }, e.kind),
      `${e.name} (id ${e.pm_id})`,
      e.cause ? el("span", { class: "cause" }, e.cause) : null,
      el("span", { class: "text" }, e.text),
      e.last_error ? el("span", { class: "lasterr", title: "the last line of its error log" }, e.last_error) : null)));
  }

  // ---- wiring --------------------------------------------------------------------------

  $("confirm-ok").addEventListener("click", confirmed);
  $("confirm-cancel").addEventListener("click", () => { ui.pending = null; $("confirm").close(); });
  $("scale-count").addEventListener("keydown", (e) => { if (e.key === "Enter") confirmed(); });
  $("tab-logs").addEventListener("click", () => showTab("logs"));
  $("tab-details").addEventListener("click", () => showTab("details"));
  $("log-search").addEventListener("input", refilter);
  $("log-out").addEventListener("change", refilter);
  $("log-err").addEventListener("change", refilter);
  $("log-pause").addEventListener("change", () => {
    if (!$("log-pause").checked) { const waiting = ui.paused; ui.paused = []; addLines(waiting); }
  });
  connect();
})();
