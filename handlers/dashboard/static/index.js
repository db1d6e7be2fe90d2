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
    li.append(title, total, donors, bar, goalLabel);
    return li;
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
