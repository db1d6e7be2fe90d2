"use strict";
document.getElementById("open-project").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = document.getElementById("project-id").value.trim();
  if (id) window.location.href = "/projects/" + encodeURIComponent(id);
});
