"use strict";
(function () {
  const projectId = decodeURIComponent(window.location.pathname.split("/").pop() || "");
  const totalEl = document.getElementById("total");
  const donorsEl = document.getElementById("donors");
  const statusEl = document.getElementById("status");
  const recentEl = document.getElementById("recent");
  document.getElementById("title").textContent = projectId;
  document.title = projectId + " - Lifeline";

  function money(minor, currency) {
    if (!currency) return "0";
    const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
      .maximumFractionDigits;
    return new Intl.NumberFormat(undefined, { style: "currency", currency })
      .format(minor / Math.pow(10, digits));
  }

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

  function showTicker(t) {
    totalEl.textContent = money(t.total_minor, t.currency);
    totalEl.dataset.totalMinor = String(t.total_minor);
    donorsEl.textContent = String(t.donors_count);
    recentEl.replaceChildren(...t.recent.map((d) => donationItem(d, t.currency, false)));
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
  socket.on("disconnect", () => { statusEl.textContent = "reconnecting..."; });
  socket.on("donation", (event) => {
    totalEl.textContent = money(event.total_minor, event.currency);
    totalEl.dataset.totalMinor = String(event.total_minor);
    donorsEl.textContent = String(event.donors_count);
    recentEl.prepend(donationItem(event.donation, event.currency, true));
    while (recentEl.children.length > 10) recentEl.lastElementChild.remove();
  });
})();
