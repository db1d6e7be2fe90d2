"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const HISTORY = 300; // seconds of figures the charts keep
  let token = sessionStorage.getItem("lifeline.operator.token");
  let refreshToken = sessionStorage.getItem("lifeline.operator.refresh");
  const el = (id) => document.getElementById(id);

  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
  function row(...texts) { const tr = document.createElement("tr"); tr.append(...texts.map(cell)); return tr; }

  // -- the map: Leaflet, on the configured tile server or an offline world outline --------
  let map = null;
  const layers = new Map(); // alert id -> {marker, trail}

  async function ensureMap(config) {
    if (map) return;
    map = L.map("map", { worldCopyJump: true, attributionControl: true }).setView([20, 0], 2);
    map.attributionControl.setPrefix(false);
    if (config && config.tiles_url) {
      L.tileLayer(config.tiles_url, { maxZoom: 18, attribution: config.attribution || "" }).addTo(map);
      el("map").dataset.base = "tiles";
    } else {
      // Natural Earth's land (world-atlas), served by the node: coastlines with no tile server.
      const response = await fetch("/static/vendor/land-110m.json");
      const topology = await response.json();
      const land = topojson.feature(topology, topology.objects.land);
      L.geoJSON(land, {
        interactive: false,
        style: { className: "world-land", color: "#8aa1b8", weight: 0.8, fillColor: "#e9efe4", fillOpacity: 1 },
      }).addTo(map);
      map.attributionControl.addAttribution("Natural Earth");
      el("map").dataset.base = "outline";
    }
    map.invalidateSize();
  }

  function drawAlerts(alerts) {
    const seen = new Set();
    for (const a of alerts) {
      if (a.lat === null || a.lon === null) continue;
      seen.add(a.id);
      const trail = (a.trail || []).map((p) => [p.lat, p.lon]);
      let layer = layers.get(a.id);
      if (!layer) {
        layer = {
          trail: L.polyline(trail, { className: "sos-trail", color: "#c0392b", weight: 3, opacity: 0.7 }).addTo(map),
          marker: L.circleMarker([a.lat, a.lon], { className: "sos-marker", radius: 8, color: "#fff", weight: 2, fillColor: "#c0392b", fillOpacity: 1 }).addTo(map),
        };
        layer.marker.bindTooltip("", { direction: "top" });
        layers.set(a.id, layer);
      }
      layer.trail.setLatLngs(trail);
      layer.marker.setLatLng([a.lat, a.lon]);
      layer.marker.setStyle({ fillColor: a.status === "acknowledged" ? "#e67e22" : "#c0392b" });
      layer.marker.setTooltipContent(a.display_name + " (" + a.status + ")");
      const node = layer.marker.getElement();
      if (node) node.dataset.alertId = a.id;
    }
    for (const [id, layer] of layers) {
      if (!seen.has(id)) {
        layer.marker.remove();
        layer.trail.remove();
        layers.delete(id);
      }
    }
    el("alerts").replaceChildren(...alerts.map((a) =>
      row(a.display_name, a.status, String(a.escalation_level),
        a.lat === null ? "unknown" : a.lat.toFixed(4) + ", " + a.lon.toFixed(4),
        (a.recipients || []).map(contactState).join("; "))));
  }

  // Each contact: reached by what (or failed, or still waiting), and acknowledged.
  function contactState(r) {
    let state = r.reached ? "reached by " + r.reached.channel : (r.failed ? "failed (" + r.failed + ")" : "waiting");
    if (r.acknowledged_at) state += ", acknowledged";
    return r.name + ": " + state;
  }

  // -- nodes: live charts of events per second and sockets, and the table behind them -----
  const history = { at: [], nodes: new Map() }; // node id -> {events: [], sockets: []}
  const charts = {};
  const COLORS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98", "#b9770e", "#5d6d7e"];

  function chart(name, unit) {
    const ids = [...history.nodes.keys()];
    const data = [history.at, ...ids.map((id) => history.nodes.get(id)[name])];
    const figure = el(name + "-chart");
    const key = ids.join(",");
    if (!charts[name] || charts[name].key !== key) {
      if (charts[name]) charts[name].plot.destroy();
      charts[name] = {
        key,
        plot: new uPlot({
          width: Math.max(260, figure.clientWidth || 400),
          height: 180,
          scales: { x: { time: true } },
          series: [{}, ...ids.map((id, i) => ({ label: id, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } }))],
          axes: [{}, { label: unit }],
        }, data, figure),
      };
    } else {
      charts[name].plot.setData(data);
    }
  }

  function drawNodes(nodes) {
    const now = Date.now() / 1000;
    history.at.push(now);
    for (const n of nodes) {
      if (!history.nodes.has(n.node_id)) {
        history.nodes.set(n.node_id, { events: history.at.slice(0, -1).map(() => null), sockets: history.at.slice(0, -1).map(() => null) });
      }
    }
    const byId = new Map(nodes.map((n) => [n.node_id, n]));
    for (const [id, h] of history.nodes) {
      const n = byId.get(id);
      h.events.push(n ? n.events_per_s : null);
      h.sockets.push(n ? n.sockets : null);
    }
    while (history.at.length > HISTORY) {
      history.at.shift();
      for (const h of history.nodes.values()) { h.events.shift(); h.sockets.shift(); }
    }
    chart("events", "events/s");
    chart("sockets", "sockets");
    el("nodes").replaceChildren(...nodes.map((n) => row(n.node_id, String(n.sockets), n.events_per_s.toFixed(1),
      n.kafka_lag === null || n.kafka_lag === undefined ? "no Kafka" : String(n.kafka_lag))));
    const sockets = nodes.reduce((s, n) => s + n.sockets, 0);
    const events = nodes.reduce((s, n) => s + n.events_per_s, 0);
    el("nodes-summary").textContent = nodes.length + (nodes.length === 1 ? " node, " : " nodes, ") +
      sockets + " sockets, " + events.toFixed(1) + " events/s.";
    el("events-chart").dataset.nodes = String(nodes.length);
  }

  // -- deliveries: one bar per channel and result, drawn as SVG -----------------------------
  function drawDeliveries(results) {
    const rows = [];
    const items = [];
    for (const [channel, byStatus] of Object.entries(results)) {
      for (const [status, count] of Object.entries(byStatus)) {
        rows.push(row(channel, status, String(count)));
        items.push({ label: channel + " " + status, count, ok: status === "delivered" || status === "sent" });
      }
    }
    el("deliveries").replaceChildren(...rows);
    const svg = el("deliveries-chart");
    const max = Math.max(1, ...items.map((i) => i.count));
    const height = Math.max(24, items.length * 24);
    svg.setAttribute("viewBox", "0 0 300 " + height);
    svg.replaceChildren(...items.map((item, i) => {
      const g = document.createElementNS(SVG, "g");
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("x", "110");
      bar.setAttribute("y", String(i * 24 + 4));
      bar.setAttribute("height", "16");
      bar.setAttribute("width", String(Math.max(1, (140 * item.count) / max)));
      bar.setAttribute("class", item.ok ? "bar ok" : "bar");
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", "0");
      label.setAttribute("y", String(i * 24 + 16));
      label.textContent = item.label;
      const value = document.createElementNS(SVG, "text");
      value.setAttribute("x", String(114 + (140 * item.count) / max));
      value.setAttribute("y", String(i * 24 + 16));
      value.textContent = String(item.count);
      g.append(bar, label, value);
      return g;
    }));
    const total = items.reduce((s, i) => s + i.count, 0);
    el("deliveries-summary").textContent = total
      ? total + " deliveries in the last hour: " + items.map((i) => i.label + " " + i.count).join(", ") + "."
      : "No deliveries in the last hour.";
  }

  function keep(pair) {
    token = pair.access_token;
    refreshToken = pair.refresh_token;
    sessionStorage.setItem("lifeline.operator.token", token);
    sessionStorage.setItem("lifeline.operator.refresh", refreshToken);
  }

  // The access token lives 15 minutes: swap it with the refresh token rather than sign out.
  async function renew() {
    if (!refreshToken) return false;
    const response = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refreshToken }),
    });
    if (!response.ok) return false;
    keep(await response.json());
    return true;
  }

  async function overview() {
    return fetch("/api/v1/ops/overview", { headers: { Authorization: "Bearer " + token } });
  }

  async function refresh() {
    let response = await overview();
    if (response.status === 401 && await renew()) response = await overview();
    if (response.status === 401 || response.status === 403) { signOut(); return; }
    if (!response.ok) return;
    const body = await response.json();
    await ensureMap(body.map);
    drawAlerts(body.alerts);
    drawNodes(body.nodes);
    drawDeliveries(body.deliveries);
  }

  let timer = null;
  function start() {
    el("login").classList.add("hidden");
    el("console").classList.remove("hidden");
    refresh();
    timer = setInterval(() => { refresh().catch(() => {}); }, 1000);
  }
  function signOut() {
    token = null;
    refreshToken = null;
    sessionStorage.removeItem("lifeline.operator.token");
    sessionStorage.removeItem("lifeline.operator.refresh");
    if (timer) clearInterval(timer);
    el("console").classList.add("hidden");
    el("login").classList.remove("hidden");
  }

  el("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    el("login-error").textContent = "";
    const response = await fetch("/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: el("email").value, password: el("password").value }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { el("login-error").textContent = body.error ? body.error.message : "sign-in failed"; return; }
    if (body.user.role !== "admin") { el("login-error").textContent = "this view is for operators (role admin)"; return; }
    keep(body);
    start();
  });

  if (token) start();
})();
