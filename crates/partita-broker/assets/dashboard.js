// Partita's dashboard: polls the broker's JSON endpoints and redraws. No libraries.
"use strict";

const GROUPS_EVERY_MS = 2000;
const GROUP_EVERY_MS = 2000;
const TOPICS_EVERY_MS = 5000;
const PARTITION_ROWS = 100;
const PALETTE = ["#2f6fed", "#2b8a3e", "#9c36b5", "#e8590c", "#0c8599", "#c2255c",
                 "#5c940d", "#364fc7", "#a61e4d", "#087f5b", "#862e9c", "#d9480f"];

const $ = (id) => document.getElementById(id);
let selected = decodeURIComponent((location.hash.match(/group=([^&]*)/) || [])[1] || "");
let lastGroup = null;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function num(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return s.toFixed(1);
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "in progress";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
}

// Partition lists as ranges: [0,1,2,5] -> "0–2, 5".
function ranges(list) {
  const sorted = [...list].sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j;
  }
  return out.join(", ");
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function setStatus(text, error) {
  const status = $("status");
  status.textContent = text;
  status.className = error ? "status error" : "status";
}

// ---- groups list -------------------------------------------------------------------------

function sparkline(values) {
  if (!values || values.length < 2) return "";
  const w = 90, h = 20, max = Math.max(1, ...values);
  const points = values.map((v, i) =>
    `${(i / (values.length - 1)) * w},${h - 1 - (v / max) * (h - 2)}`).join(" ");
  return `<svg class="spark" width="${w}" height="${h}"><polyline points="${points}"/></svg>`;
}

function renderGroups(data) {
  const rows = data.groups.map((g) => `
    <tr data-testid="group-row" data-group="${esc(g.group_id)}"
        class="${g.group_id === selected ? "selected" : ""}">
      <td class="mono">${esc(g.group_id)}</td>
      <td><span class="badge ${esc(g.state)}">${esc(g.state)}</span></td>
      <td>${esc(g.protocol_type || "—")}${g.protocol ? ` / ${esc(g.protocol)}` : ""}${
        g.type === "share" ? ` <span class="badge share" title="acquired / available records">${num(g.acquired)} / ${num(g.available)}</span>` : ""}</td>
      <td class="num">${num(g.members)}</td>
      <td class="num ${g.total_lag > 0 ? "lag-hot" : ""}">${num(g.total_lag)}</td>
      <td>${sparkline(g.trend)}</td>
      <td class="num">${num(g.rebalances_total)}</td>
    </tr>`).join("");
  $("groups-table").querySelector("tbody").innerHTML = rows;
  $("groups-empty").hidden = data.groups.length > 0;
  if (!selected && data.groups.length > 0) select(data.groups[0].group_id);
}

$("groups-table").addEventListener("click", (event) => {
  const row = event.target.closest("tr[data-group]");
  if (row) select(row.dataset.group);
});

function select(groupId) {
  selected = groupId;
  history.replaceState(null, "", `#group=${encodeURIComponent(groupId)}`);
  for (const row of document.querySelectorAll("#groups-table tr[data-group]")) {
    row.classList.toggle("selected", row.dataset.group === groupId);
  }
  pollGroup();
}

// ---- one group ---------------------------------------------------------------------------

function memberColors(group) {
  const colors = new Map();
  group.members.forEach((m, i) => colors.set(m.member_id, PALETTE[i % PALETTE.length]));
  return colors;
}

function memberLabel(group, memberId) {
  const m = group.members.find((x) => x.member_id === memberId);
  if (!m) return memberId ? esc(memberId.slice(-12)) : "—";
  return `${esc(m.client_id || "?")} <span class="mono">…${esc(m.member_id.slice(-8))}</span>`;
}

function renderSummary(g) {
  $("group-id").textContent = g.group_id;
  if (g.type === "share") {
    $("group-summary").innerHTML = [
      `<span class="badge ${esc(g.state)}">${esc(g.state)}</span>`,
      `share group`,
      `epoch <b>${g.generation ?? "—"}</b>`,
      `members <b>${g.members.length}</b>`,
      `share lag <b data-testid="share-lag">${num(g.total_lag)}</b>`,
      `acquired <b data-testid="share-acquired">${num(g.acquired)}</b>`,
      `available <b data-testid="share-available">${num(g.available)}</b>`,
      `in flight <b>${num(g.in_flight)}</b>`,
    ].join(" · ");
    return;
  }
  const parts = [
    `<span class="badge ${esc(g.state)}">${esc(g.state)}</span>`,
    `protocol <b>${esc(g.protocol_type || "—")}${g.protocol ? " / " + esc(g.protocol) : ""}</b>`,
    `generation <b>${g.generation ?? "—"}</b>`,
    `members <b>${g.members.length}</b>`,
    `reads <b data-testid="isolation-level" title="a read_committed group's lag ends at the last stable offset">${esc(g.isolation_level)}</b>`,
    `total lag <b>${num(g.total_lag)}</b>`,
    `oldest unconsumed <b>${seconds(g.max_lag_seconds)}</b> s`,
    `rebalances <b>${num(g.rebalances_total)}</b>`,
  ];
  $("group-summary").innerHTML = parts.join(" · ");
}

function renderChart(g) {
  const history = g.history || [];
  const el = $("lag-chart");
  if (history.length < 2) {
    el.innerHTML = `<p class="note">Collecting samples (every ${g.history_interval_ms / 1000} s)…</p>`;
    return;
  }
  const W = 900, H = 200, L = 60, R = 10, T = 10, B = 24;
  const t0 = history[0].at_ms, t1 = history[history.length - 1].at_ms;
  const max = Math.max(1, ...history.map((s) => s.total_lag));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const line = (key) => history.map((s) => `${x(s.at_ms).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ");
  const area = `${x(t0)},${y(0)} ${line("total_lag")} ${x(t1)},${y(0)}`;
  const ticks = [0, 0.5, 1].map((f) => {
    const v = Math.round(max * f);
    return `<line class="axis" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>
            <text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${num(v)}</text>`;
  }).join("");
  const times = (t1 - t0 < 3000 ? [t0, t1] : [t0, (t0 + t1) / 2, t1]).map((t, i, all) =>
    `<text x="${x(t)}" y="${H - 6}" text-anchor="${i === 0 ? "start" : i === all.length - 1 ? "end" : "middle"}">${clock(t)}</text>`).join("");
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" data-testid="lag-chart">
      ${ticks}${times}
      <polygon class="area" points="${area}"/>
      <polyline class="total" points="${line("total_lag")}"/>
      <polyline class="max" points="${line("max_partition_lag")}"/>
    </svg>`;
}

function renderMembers(g, colors) {
  const rows = g.members.map((m) => {
    const owns = m.assignment.map((a) => `${esc(a.topic)}: ${ranges(a.partitions)}`).join("; ");
    const idle = m.idle ? ` <span class="badge idle">idle</span>` : "";
    return `<tr data-testid="member-row" data-member="${esc(m.member_id)}" data-idle="${m.idle}"
                class="${m.idle ? "idle" : ""}">
      <td title="${esc(m.member_id)}"><span class="chip" style="background:${colors.get(m.member_id)}"></span>${
        memberLabel(g, m.member_id)}${
        m.group_instance_id ? ` <span class="badge">static ${esc(m.group_instance_id)}</span>` : ""}</td>
      <td class="mono">${esc(m.client_host)}</td>
      <td class="num">${num(m.partition_count)}</td>
      <td class="wrap">${owns || "—"}${idle}</td>
    </tr>`;
  }).join("");
  $("members-table").querySelector("tbody").innerHTML = rows ||
    `<tr><td colspan="4" class="note">no members</td></tr>`;
  const idle = g.members.filter((m) => m.idle).length;
  $("members-note").textContent = !g.assignment_known
    ? "Assignments are shown once the group is Stable."
    : idle ? `${idle} member(s) idle: more members than partitions.` : "";
}

function renderTimeline(g) {
  const items = g.timeline.rebalances.map((r) => {
    const moves = r.moved.slice(0, 8).map((m) =>
      `${esc(m.topic)}[${m.partition}] ${m.from ? memberLabel(g, m.from) : "unassigned"} → ${
        m.to ? memberLabel(g, m.to) : "revoked"}`).join("; ");
    const more = r.moved_count > 8 ? `; … ${r.moved_count - 8} more` : "";
    return `<li data-testid="rebalance" data-cause="${esc(r.cause)}" class="${r.completed_at_ms ? "" : "open"}">
      <span class="when">${clock(r.started_at_ms)}</span>
      <span class="badge cause">${esc(r.cause.replace(/_/g, " "))}</span>
      ${r.generation !== null ? `→ generation <b>${r.generation}</b>,` : ""}
      <b>${duration(r.duration_ms)}</b>,
      ${num(r.members)} member(s), <b>${num(r.moved_count)}</b> partition(s) moved
      ${moves ? `<div class="moves">${moves}${more}</div>` : ""}
    </li>`;
  }).join("");
  $("timeline").innerHTML = items || `<li class="note">No rebalance since the broker started.</li>`;
  const changes = g.timeline.member_changes.slice(0, 30).map((c) =>
    `<li><span class="when">${clock(c.at_ms)}</span> <b>${esc(c.event.replace(/_/g, " "))}</b>
       <span class="mono">${esc(c.member_id)}</span>${
       c.reason ? ` <span class="badge removed">${esc(c.reason.replace(/_/g, " "))}</span>` : ""}</li>`).join("");
  $("member-changes").innerHTML = changes || `<li>none</li>`;
}

function heatClass(p, max) {
  if (p.lag === null) return "none";
  if (p.lag === 0 || max === 0) return "";
  const f = p.lag / max;
  return f > 0.75 ? "l4" : f > 0.4 ? "l3" : f > 0.15 ? "l2" : "l1";
}

const CLASSIC_HEAD = $("partitions-head").innerHTML;
const SHARE_HEAD = `<tr>
  <th>Topic</th><th class="num">Partition</th><th class="num">Start offset</th>
  <th class="num">Log end</th><th class="num">Share lag</th><th class="num">Acquired</th>
  <th class="num">Available</th><th class="num">In flight</th><th></th></tr>`;

// A share group's partitions: every member reads every one, so no owner; the share lag is what
// is not yet acknowledged, and acquired / available count the records of the in-flight window.
function renderSharePartitions(g, all, maxLag) {
  const head = $("partitions-head");
  if (head.dataset.kind !== "share") { head.innerHTML = SHARE_HEAD; head.dataset.kind = "share"; }
  const filter = $("partition-filter").value.trim().toLowerCase();
  let rows = all.filter((p) => !filter || `${p.topic} ${p.partition}`.toLowerCase().includes(filter));
  rows.sort((a, b) => (b.share_lag ?? -1) - (a.share_lag ?? -1) || a.topic.localeCompare(b.topic) || a.partition - b.partition);
  const total = rows.length;
  if (!$("show-all").checked) rows = rows.slice(0, PARTITION_ROWS);
  $("partitions-count").textContent = `${all.length} share-partition(s), most lagging first`;
  $("partitions-table").querySelector("tbody").innerHTML = rows.map((p) => `
    <tr data-testid="share-partition-row" data-topic="${esc(p.topic)}" data-partition="${p.partition}">
      <td>${esc(p.topic)}</td>
      <td class="num">${p.partition}</td>
      <td class="num">${num(p.start_offset)}</td>
      <td class="num">${num(p.log_end_offset)}</td>
      <td class="num">${num(p.share_lag)}</td>
      <td class="num">${num(p.acquired)}</td>
      <td class="num">${num(p.available)}</td>
      <td class="num">${num(p.in_flight)}</td>
      <td><span class="bar" style="width:${maxLag ? Math.round(((p.share_lag || 0) / maxLag) * 120) : 0}px"></span></td>
    </tr>`).join("");
  $("partitions-more").textContent = total > rows.length
    ? `Showing ${rows.length} of ${total}; tick "show every partition" or filter to see the rest.` : "";
}

function renderPartitions(g, colors) {
  const all = g.partitions;
  if (g.type === "share") {
    const maxShareLag = Math.max(0, ...all.map((p) => p.share_lag || 0));
    $("heat").innerHTML = "";
    renderSharePartitions(g, all, maxShareLag);
    return;
  }
  const head = $("partitions-head");
  if (head.dataset.kind === "share") { head.innerHTML = CLASSIC_HEAD; head.dataset.kind = ""; }
  const maxLag = Math.max(0, ...all.map((p) => p.lag || 0));
  $("heat").innerHTML = all.length > 1 ? all.map((p) =>
    `<span class="${heatClass(p, maxLag)}" title="${esc(p.topic)}[${p.partition}] lag ${num(p.lag)}"></span>`).join("") : "";
  const filter = $("partition-filter").value.trim().toLowerCase();
  const owner = (p) => {
    const m = g.members.find((x) => x.member_id === p.owner);
    return m ? `${m.client_id} ${m.member_id}` : "";
  };
  let rows = all.filter((p) => !filter ||
    `${p.topic} ${p.partition} ${owner(p)}`.toLowerCase().includes(filter));
  rows.sort((a, b) => (b.lag ?? -1) - (a.lag ?? -1) || a.topic.localeCompare(b.topic) || a.partition - b.partition);
  const total = rows.length;
  if (!$("show-all").checked) rows = rows.slice(0, PARTITION_ROWS);
  $("partitions-count").textContent = `${all.length} partition(s), most lagging first`;
  $("partitions-table").querySelector("tbody").innerHTML = rows.map((p) => `
    <tr data-testid="partition-row" data-topic="${esc(p.topic)}" data-partition="${p.partition}"
        data-skewed="${p.skewed}" class="${p.skewed ? "skewed" : ""}">
      <td>${esc(p.topic)}</td>
      <td class="num">${p.partition}</td>
      <td>${p.owner ? `<span class="chip" style="background:${colors.get(p.owner) || "#ccc"}"></span>${memberLabel(g, p.owner)}` : "—"}</td>
      <td class="num">${p.committed == null && p.fetch_position != null
        ? `<span class="lso" title="no committed offset: lag counted from the owner's fetch position">fetching ${num(p.fetch_position)}</span>`
        : num(p.committed)}</td>
      <td class="num">${num(p.log_end_offset)}${p.last_stable_offset < p.log_end_offset
        ? ` <span class="lso" title="last stable offset: records from here wait on an open transaction">(stable ${num(p.last_stable_offset)})</span>` : ""}</td>
      <td class="num">${num(p.lag)}</td>
      <td class="num">${seconds(p.lag_seconds)}</td>
      <td>${p.skewed ? `<span class="badge skew">skewed</span> ` : ""}<span class="bar" style="width:${
        maxLag ? Math.round(((p.lag || 0) / maxLag) * 120) : 0}px"></span></td>
    </tr>`).join("");
  $("partitions-more").textContent = total > rows.length
    ? `Showing ${rows.length} of ${total}; tick "show every partition" or filter to see the rest.` : "";
}

function renderGroup(g) {
  $("group").hidden = false;
  const colors = memberColors(g);
  renderSummary(g);
  renderChart(g);
  renderMembers(g, colors);
  renderTimeline(g);
  renderPartitions(g, colors);
}

$("partition-filter").addEventListener("input", () => lastGroup && renderPartitions(lastGroup, memberColors(lastGroup)));
$("show-all").addEventListener("change", () => lastGroup && renderPartitions(lastGroup, memberColors(lastGroup)));

// ---- topics ------------------------------------------------------------------------------

function renderTopics(data) {
  const showInternal = $("show-internal").checked;
  const rows = data.topics.filter((t) => showInternal || !t.internal).map((t) => `
    <tr data-testid="topic-row" data-topic="${esc(t.name)}">
      <td class="mono">${esc(t.name)}</td>
      <td class="num">${num(t.partitions)}</td>
      <td class="num">${bytes(t.size_bytes)}</td>
      <td class="num">${num(t.log_end_offset)}</td>
      <td class="num">${num(Math.round(t.rates.records_in_per_sec))} rec/s · ${bytes(t.rates.bytes_in_per_sec)}/s</td>
      <td class="num">${num(Math.round(t.rates.records_out_per_sec))} rec/s · ${bytes(t.rates.bytes_out_per_sec)}/s</td>
    </tr>`).join("");
  $("topics-table").querySelector("tbody").innerHTML = rows ||
    `<tr><td colspan="6" class="note">no topics</td></tr>`;
}

// ---- polling -----------------------------------------------------------------------------

let lastTopics = null;
$("show-internal").addEventListener("change", () => lastTopics && renderTopics(lastTopics));

let groupInFlight = false;
async function pollGroup() {
  if (!selected || groupInFlight) return;
  groupInFlight = true;
  try {
    const group = await getJSON(`/api/groups/${encodeURIComponent(selected)}`);
    if (group && group.group_id === selected) {
      lastGroup = group;
      renderGroup(group);
    } else if (!group) {
      $("group").hidden = true;
    }
  } catch (error) {
    setStatus(String(error), true);
  } finally {
    groupInFlight = false;
  }
}

function every(ms, task) {
  let running = false;
  const run = async () => {
    if (running) return;
    running = true;
    try { await task(); } finally { running = false; }
  };
  run();
  setInterval(run, ms);
}

every(GROUPS_EVERY_MS, async () => {
  try {
    renderGroups(await getJSON("/api/groups"));
    setStatus(`updated ${clock(Date.now())}`);
  } catch (error) {
    setStatus(`broker unreachable (${error.message})`, true);
  }
});
every(GROUP_EVERY_MS, pollGroup);
every(TOPICS_EVERY_MS, async () => {
  try {
    lastTopics = await getJSON("/api/topics");
    renderTopics(lastTopics);
  } catch (error) {
    setStatus(`broker unreachable (${error.message})`, true);
  }
});
