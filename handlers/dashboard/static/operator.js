"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let token = sessionStorage.getItem("lifeline.operator.token");
  let refreshToken = sessionStorage.getItem("lifeline.operator.refresh");
  const el = (id) => document.getElementById(id);

  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
  function row(...texts) { const tr = document.createElement("tr"); tr.append(...texts.map(cell)); return tr; }

  // An equirectangular world: x = lon, y = -lat, drawn without any tile server.
  (function graticule() {
    const g = el("graticule");
    for (let lon = -180; lon <= 180; lon += 30) {
      const l = document.createElementNS(SVG, "line");
      l.setAttribute("x1", lon); l.setAttribute("x2", lon); l.setAttribute("y1", -90); l.setAttribute("y2", 90);
      l.setAttribute("class", "grid"); g.append(l);
    }
    for (let lat = -90; lat <= 90; lat += 30) {
      const l = document.createElementNS(SVG, "line");
      l.setAttribute("y1", lat); l.setAttribute("y2", lat); l.setAttribute("x1", -180); l.setAttribute("x2", 180);
      l.setAttribute("class", "grid"); g.append(l);
    }
  })();

  function drawAlerts(alerts) {
    const markers = el("markers");
    const seen = new Set();
    for (const a of alerts) {
      seen.add(a.id);
      let dot = markers.querySelector('[data-alert-id="' + CSS.escape(a.id) + '"]');
      if (!dot) {
        dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("r", "2.5");
        dot.dataset.alertId = a.id;
        const title = document.createElementNS(SVG, "title");
        dot.append(title);
        markers.append(dot);
      }
      dot.setAttribute("cx", String(a.lon));
      dot.setAttribute("cy", String(-a.lat));
      dot.setAttribute("class", "marker " + a.status);
      dot.firstChild.textContent = a.display_name + " (" + a.status + ")";
    }
    for (const dot of [...markers.children]) if (!seen.has(dot.dataset.alertId)) dot.remove();
    el("alerts").replaceChildren(...alerts.map((a) =>
      row(a.display_name, a.status, String(a.escalation_level), a.lat.toFixed(4) + ", " + a.lon.toFixed(4),
        (a.recipients || []).map(contactState).join("; "))));
  }

  // Each contact: reached by what (or failed, or still waiting), and acknowledged.
  function contactState(r) {
    let state = r.reached ? "reached by " + r.reached.channel : (r.failed ? "failed (" + r.failed + ")" : "waiting");
    if (r.acknowledged_at) state += ", acknowledged";
    return r.name + ": " + state;
  }

  function drawNodes(nodes) {
    el("nodes").replaceChildren(...nodes.map((n) => row(n.node_id, String(n.sockets), n.events_per_s.toFixed(1))));
  }

  function drawDeliveries(results) {
    const rows = [];
    for (const [channel, byStatus] of Object.entries(results)) {
      for (const [status, count] of Object.entries(byStatus)) rows.push(row(channel, status, String(count)));
    }
    el("deliveries").replaceChildren(...rows);
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
