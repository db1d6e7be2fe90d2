// One project: its total and goal, donations over time, and the latest donations, live.
"use strict";
(function () {
  const { money, showGoal, digits } = window.Lifeline;
  const projectId = decodeURIComponent(window.location.pathname.split("/").pop() || "");
  const el = (id) => document.getElementById(id);
  const totalEl = el("total");
  const statusEl = el("status");
  const recentEl = el("recent");
  let state = { total_minor: 0, donors_count: 0, currency: null, goal_minor: null };
  let series = null;
  const charts = {};
  el("title").textContent = projectId;
  document.title = projectId + " - Lifeline";

  function donationItem(d, currency, fresh) {
    const li = document.createElement("li");
    if (fresh) li.className = "new";
    const who = document.createElement("strong");
    who.textContent = d.donor_display;
    li.append(who, " gave " + money(d.amount_minor, currency));
    if (d.message) {
      const msg = document.createElement("div");
      msg.className = "muted";
      msg.textContent = d.message;
      li.append(msg);
    }
    return li;
  }

  function showTotals() {
    totalEl.textContent = money(state.total_minor, state.currency);
    totalEl.dataset.totalMinor = String(state.total_minor);
    el("donors").textContent = String(state.donors_count);
    showGoal(el("goal"), el("goal-label"), state.total_minor, state.goal_minor, state.currency);
  }

  function showTicker(t) {
    state = { total_minor: t.total_minor, donors_count: t.donors_count, currency: t.currency, goal_minor: t.goal_minor };
    if (t.title) {
      el("title").textContent = t.title;
      document.title = t.title + " - Lifeline";
    }
    showTotals();
    recentEl.replaceChildren(...t.recent.map((d) => donationItem(d, t.currency, false)));
  }

  // -- charts ------------------------------------------------------------------------------
  const bars = uPlot.paths.bars({ size: [0.8, 64] });

  function major(minor) { return minor / Math.pow(10, digits(state.currency || "EUR")); }

  function draw(name, buckets, label) {
    const figure = el(name + "-chart");
    const xs = buckets.map((b) => Date.parse(b.at) / 1000);
    const ys = buckets.map((b) => major(b.amount_minor));
    const width = Math.max(280, figure.clientWidth || 600);
    if (!charts[name]) {
      charts[name] = new uPlot({
        width,
        height: 220,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [{}, { values: (u, ticks) => ticks.map((v) => v.toLocaleString()) }],
        series: [{}, { label, stroke: "#c0392b", fill: "rgba(192,57,43,0.35)", paths: bars, points: { show: false } }],
      }, [xs, ys], figure);
    } else {
      charts[name].setData([xs, ys]);
    }
    const last = buckets.length ? buckets[buckets.length - 1] : null;
    figure.dataset.lastBucketMinor = String(last ? last.amount_minor : 0);
    figure.dataset.bucketTotalMinor = String(buckets.reduce((s, b) => s + b.amount_minor, 0));
    const count = buckets.reduce((s, b) => s + b.donations, 0);
    const amount = buckets.reduce((s, b) => s + b.amount_minor, 0);
    const best = buckets.reduce((m, b) => (b.amount_minor > (m ? m.amount_minor : -1) ? b : m), null);
    el(name + "-summary").textContent = count
      ? count + (count === 1 ? " donation, " : " donations, ") + money(amount, state.currency) + " in all; the most in the " +
        (name === "hourly" ? "hour" : "day") + " from " + new Date(best.at).toUTCString() + "."
      : "No donations in this time.";
  }

  function drawTable(buckets) {
    const rows = buckets.filter((b) => b.donations > 0).reverse().map((b) => {
      const tr = document.createElement("tr");
      for (const text of [b.at.slice(0, 13).replace("T", " ") + ":00", String(b.donations), money(b.amount_minor, state.currency)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    });
    el("hourly-table").replaceChildren(...rows);
  }

  function drawAll() {
    if (!series) return;
    draw("hourly", series.hourly, "per hour");
    draw("daily", series.daily, "per day");
    drawTable(series.hourly);
  }

  async function loadSeries() {
    const response = await fetch("/api/v1/projects/" + encodeURIComponent(projectId) + "/series");
    if (!response.ok) return;
    series = await response.json();
    if (!state.currency) state.currency = series.currency;
    drawAll();
  }

  // A donation lands in its hour at once; the series is read again every minute.
  function addToSeries(donation) {
    if (!series || !series.hourly.length) return;
    const at = Date.parse(donation.at);
    let bucket = null;
    for (const b of series.hourly) if (Date.parse(b.at) <= at) bucket = b;
    const last = series.hourly[series.hourly.length - 1];
    if (!bucket || at >= Date.parse(last.at) + 3600 * 1000) {
      loadSeries().catch(() => {});
      return;
    }
    bucket.amount_minor += donation.amount_minor;
    bucket.donations += 1;
    drawAll();
  }

  // The subscribe ack carries the current ticker, so a reconnect never shows a stale total.
  const socket = io("/live", { transports: ["websocket"] });
  socket.on("connect", () => {
    statusEl.textContent = "live";
    socket.emit("live:subscribe", { project_id: projectId }, (ack) => {
      if (ack && ack.ok) showTicker(ack.ticker);
      else statusEl.textContent = "error: " + (ack && ack.error ? ack.error.message : "unknown");
    });
  });
  socket.on("disconnect", () => { statusEl.textContent = "reconnecting…"; });
  socket.on("donation", (event) => {
    state.total_minor = event.total_minor;
    state.donors_count = event.donors_count;
    state.currency = event.currency;
    showTotals();
    recentEl.prepend(donationItem(event.donation, event.currency, true));
    while (recentEl.children.length > 10) recentEl.lastElementChild.remove();
    addToSeries(event.donation);
  });
  window.addEventListener("resize", () => {
    for (const [name, chart] of Object.entries(charts)) {
      chart.setSize({ width: Math.max(280, el(name + "-chart").clientWidth), height: 220 });
    }
  });
  loadSeries().catch(() => {});
  setInterval(() => loadSeries().catch(() => {}), 60000);
})();
