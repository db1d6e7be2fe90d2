// The start page: every project Lifeline knows, with live totals and goal progress.
"use strict";
(function () {
  const { money, showGoal } = window.Lifeline;
  const list = document.getElementById("projects");
  const empty = document.getElementById("empty");
  const statusEl = document.getElementById("status");
  const search = document.getElementById("search");
  const cards = new Map(); // project id -> {card, project}
  let subscribed = new Set();

  const socket = io("/live", { transports: ["websocket"] });

  function card(project) {
    const li = document.createElement("li");
    li.className = "card project";
    li.dataset.projectId = project.project_id;
    const title = document.createElement("h3");
    const link = document.createElement("a");
    link.href = "/projects/" + encodeURIComponent(project.project_id);
    link.textContent = project.title || project.project_id;
    title.append(link);
    const total = document.createElement("p");
    total.className = "total";
    const donors = document.createElement("p");
    donors.className = "muted donors";
    const bar = document.createElement("progress");
    bar.className = "goal";
    const goalLabel = document.createElement("p");
    goalLabel.className = "muted goal-label";
    bar.setAttribute("aria-label", "Progress toward the goal of " + link.textContent);
    const spark = document.createElementNS(SVG, "svg");
    spark.setAttribute("class", "spark");
    spark.setAttribute("viewBox", "0 0 48 12");
    spark.setAttribute("preserveAspectRatio", "none");
    spark.setAttribute("role", "img");
    li.append(title, total, donors, bar, goalLabel, spark);
    return li;
  }

  // -- sparklines: donations per hour over the last 48 hours --------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const hours = new Map(); // project id -> [{at, amount_minor, donations}] (48)

  function drawSpark(id) {
    const entry = cards.get(id);
    const buckets = hours.get(id);
    if (!entry || !buckets) return;
    const spark = entry.card.querySelector("svg.spark");
    const max = Math.max(1, ...buckets.map((b) => b.amount_minor));
    const bars = buckets.map((b, i) => {
      const rect = document.createElementNS(SVG, "rect");
      const h = (11 * b.amount_minor) / max;
      rect.setAttribute("x", String(i + 0.1));
      rect.setAttribute("width", "0.8");
      rect.setAttribute("y", String(12 - h));
      rect.setAttribute("height", String(h));
      return rect;
    });
    spark.replaceChildren(...bars);
    const count = buckets.reduce((s, b) => s + b.donations, 0);
    const amount = buckets.reduce((s, b) => s + b.amount_minor, 0);
    spark.dataset.bucketTotalMinor = String(amount);
    spark.setAttribute("aria-label", "Last 48 hours: " + count + (count === 1 ? " donation, " : " donations, ") +
      money(amount, entry.project.currency) + ", per hour");
  }

  async function loadSpark(id) {
    const response = await fetch("/api/v1/projects/" + encodeURIComponent(id) + "/series");
    if (!response.ok) return;
    hours.set(id, (await response.json()).hourly);
    drawSpark(id);
  }

  function addToSpark(id, donation) {
    const buckets = hours.get(id);
    if (!buckets || !buckets.length) return;
    const at = Date.parse(donation.at);
    const last = buckets[buckets.length - 1];
    if (at >= Date.parse(last.at) + 3600 * 1000) { loadSpark(id).catch(() => {}); return; }
    if (at >= Date.parse(last.at)) {
      last.amount_minor += donation.amount_minor;
      last.donations += 1;
      drawSpark(id);
    }
  }

  function show(entry) {
    const { card: li, project: p } = entry;
    const total = li.querySelector(".total");
    total.textContent = money(p.total_minor, p.currency);
    total.dataset.totalMinor = String(p.total_minor);
    li.querySelector(".donors").textContent = p.donors_count + (p.donors_count === 1 ? " donor" : " donors");
    showGoal(li.querySelector(".goal"), li.querySelector(".goal-label"), p.total_minor, p.goal_minor, p.currency);
  }

  function subscribeAll() {
    if (!socket.connected) return;
    const wanted = new Set(cards.keys());
    for (const id of subscribed) {
      if (!wanted.has(id)) socket.emit("live:unsubscribe", { project_id: id }, () => {});
    }
    for (const id of wanted) {
      // The ack carries the ticker: totals are current from the moment of subscribing.
      socket.emit("live:subscribe", { project_id: id }, (ack) => {
        const entry = cards.get(id);
        if (ack && ack.ok && entry) {
          Object.assign(entry.project, {
            total_minor: ack.ticker.total_minor,
            donors_count: ack.ticker.donors_count,
            currency: ack.ticker.currency,
            goal_minor: ack.ticker.goal_minor,
          });
          show(entry);
        }
      });
    }
    subscribed = wanted;
  }

  let asked = 0;
  async function load() {
    const mine = ++asked;
    const q = search.value.trim();
    const response = await fetch("/api/v1/projects?limit=60" + (q ? "&q=" + encodeURIComponent(q) : ""));
    if (!response.ok || mine !== asked) return;
    const { projects } = await response.json();
    const items = [];
    const next = new Map();
    projects.sort((a, b) => (a.title || a.project_id).localeCompare(b.title || b.project_id));
    for (const p of projects) {
      const entry = cards.get(p.project_id) || { card: card(p), project: p };
      entry.project = Object.assign(entry.project, p);
      next.set(p.project_id, entry);
      show(entry);
      items.push(entry.card);
    }
    cards.clear();
    for (const [id, entry] of next) cards.set(id, entry);
    list.replaceChildren(...items);
    empty.classList.toggle("hidden", items.length > 0);
    subscribeAll();
    for (const id of cards.keys()) loadSpark(id).catch(() => {});
  }

  socket.on("connect", () => { statusEl.textContent = "live"; subscribeAll(); });
  socket.on("disconnect", () => { statusEl.textContent = "reconnecting…"; });
  socket.on("donation", (event) => {
    const entry = cards.get(event.project_id);
    if (!entry) return;
    Object.assign(entry.project, {
      total_minor: event.total_minor,
      donors_count: event.donors_count,
      currency: event.currency,
    });
    show(entry);
    addToSpark(event.project_id, event.donation);
    entry.card.classList.remove("new");
    void entry.card.offsetWidth; // restart the highlight
    entry.card.classList.add("new");
  });

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => load().catch(() => {}), 200);
  });
  load().catch(() => { statusEl.textContent = "could not load the projects"; });
  // New projects appear without a reload.
  setInterval(() => load().catch(() => {}), 30000);
})();
