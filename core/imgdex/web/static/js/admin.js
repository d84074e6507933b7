// Admin: the token lives in sessionStorage; the panel reloads every 2 s while shown.
import { errorText } from "./app.js";

const KEY = "imgdex:admin-token";
const REFRESH_MS = 2000;
const form = document.getElementById("token-form");
const field = document.getElementById("token");
const tokenStatus = document.getElementById("token-status");
const panel = document.getElementById("panel");
let timer = null;

const headers = () => ({ Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` });

async function refresh() {
  if (!sessionStorage.getItem(KEY)) return;
  const response = await fetch("/admin/panel", { headers: headers() });
  if (response.status === 401) {
    stop();
    tokenStatus.textContent = "The server rejected this token.";
    panel.replaceChildren();
    return;
  }
  if (!response.ok) {
    tokenStatus.textContent = `Could not load the admin data: ${await errorText(response)}`;
    return;
  }
  // Keep keyboard focus on the same button across the refresh.
  const focused = document.activeElement?.dataset?.post;
  panel.innerHTML = await response.text();
  if (focused) panel.querySelector(`[data-post="${CSS.escape(focused)}"]`)?.focus();
  tokenStatus.textContent = "Token accepted; the data below updates every 2 seconds.";
}

function start() {
  stop();
  refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, field.value.trim());
  field.value = "";
  start();
});

document.getElementById("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  stop();
  panel.replaceChildren();
  tokenStatus.textContent = "Token forgotten.";
});

panel.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-post]") : null;
  if (!button) return;
  button.disabled = true;
  const response = await fetch(button.dataset.post, { method: "POST", headers: headers() });
  tokenStatus.textContent = response.ok ? "Done." : `Failed: ${await errorText(response)}`;
  await refresh();
  // The button was re-rendered; focus its replacement (same target, toggled action).
  const row = button.closest("tr");
  const key = row?.dataset.plugin;
  if (key) panel.querySelector(`tr[data-plugin="${CSS.escape(key)}"] button`)?.focus();
});

if (sessionStorage.getItem(KEY)) start();
