// What the dashboard's pages share: money in a currency's own format, and goal progress.
"use strict";
window.Lifeline = (function () {
  function digits(currency) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
        .maximumFractionDigits;
    } catch (e) {
      return 2;
    }
  }

  function money(minor, currency) {
    // Before a project's first donation its currency is unknown: show the amount alone.
    if (!currency) return (minor / 100).toLocaleString(undefined, { minimumFractionDigits: 2 });
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency })
        .format(minor / Math.pow(10, digits(currency)));
    } catch (e) {
      return (minor / 100).toFixed(2) + " " + currency;
    }
  }

  // A <progress> toward the goal, with a text alternative for screen readers.
  function showGoal(bar, label, total, goal, currency) {
    if (!goal) {
      bar.classList.add("hidden");
      label.textContent = "No goal set";
      return;
    }
    bar.classList.remove("hidden");
    bar.max = goal;
    bar.value = Math.min(total, goal);
    bar.dataset.valueMinor = String(total);
    const percent = Math.floor((100 * total) / goal);
    bar.setAttribute("aria-valuetext", percent + "% of " + money(goal, currency));
    label.textContent = percent + "% of " + money(goal, currency);
  }

  return { money, showGoal, digits };
})();
