// Admin: an admin's session, or (auth.mode: none) the admin token kept in sessionStorage.
// The panel reloads every 2 s while shown; users and keys reload after each change.
import { errorText, withCsrf } from "./app.js";

const KEY = "imgdex:admin-token";
const REFRESH_MS = 2000;
const form = document.getElementById("token-form");
const field = document.getElementById("token");
const tokenStatus = document.getElementById("token-status");
const panel = document.getElementById("panel");
const accountsArea = document.getElementById("accounts-area");
const accounts = document.getElementById("accounts");
const accountsStatus = document.getElementById("accounts-status");
const session = panel.dataset.auth === "session";
let timer = null;

const credentials = () => session || Boolean(sessionStorage.getItem(KEY));
const headers = (extra = {}) => session
  ? withCsrf(extra)
  : { ...extra, Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };

function call(url, method, body) {
  const options = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) options.body = JSON.stringify(body);
  return fetch(url, options);
}

async function refresh() {
  if (!credentials()) return;
  const response = await fetch("/admin/panel", { headers: headers() });
  if (response.status === 401) {
    stop();
    tokenStatus.textContent = session ? "Your session has ended: log in again." : "The server rejected this token.";
    panel.replaceChildren();
    accountsArea.hidden = true;
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
  tokenStatus.textContent = session
    ? "The data below updates every 2 seconds."
    : "Token accepted; the data below updates every 2 seconds.";
}

async function refreshAccounts(message) {
  if (!credentials()) return;
  const response = await fetch("/admin/accounts", { headers: headers() });
  if (!response.ok) {
    accountsStatus.textContent = `Could not load users and keys: ${await errorText(response)}`;
    return;
  }
  accounts.innerHTML = await response.text();
  accountsArea.hidden = false;
  if (message) accountsStatus.textContent = message;
}

function start() {
  stop();
  refresh();
  refreshAccounts();
  timer = setInterval(refresh, REFRESH_MS);
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
}

form?.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, field.value.trim());
  field.value = "";
  start();
});

document.getElementById("forget-token")?.addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  stop();
  panel.replaceChildren();
  accounts.replaceChildren();
  accountsArea.hidden = true;
  tokenStatus.textContent = "Token forgotten.";
});

panel.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-post]") : null;
  if (!button) return;
  button.disabled = true;
  const response = await call(button.dataset.post, "POST");
  tokenStatus.textContent = response.ok ? "Done." : `Failed: ${await errorText(response)}`;
  await refresh();
  // The button was re-rendered; focus its replacement (same target, toggled action).
  const row = button.closest("tr");
  const key = row?.dataset.plugin;
  if (key) panel.querySelector(`tr[data-plugin="${CSS.escape(key)}"] button`)?.focus();
});

// Users and keys: change a role, disable or enable, revoke a key.
accounts.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button") : null;
  if (!button) return;
  let response;
  let done;
  if (button.dataset.setRole) {
    const name = button.dataset.setRole;
    const role = accounts.querySelector(`select[data-role-of="${CSS.escape(name)}"]`).value;
    response = await call(`/api/admin/users/${encodeURIComponent(name)}`, "PATCH", { role });
    done = `${name} is now ${role}.`;
  } else if (button.dataset.disable) {
    const name = button.dataset.disable;
    const disabled = button.dataset.value === "true";
    response = await call(`/api/admin/users/${encodeURIComponent(name)}`, "PATCH", { disabled });
    done = `${name} is ${disabled ? "disabled" : "enabled"}.`;
  } else if (button.dataset.revokeKey) {
    if (!confirm("Revoke this API key? Requests with it fail at once.")) return;
    response = await call(`/api/keys/${button.dataset.revokeKey}`, "DELETE");
    done = "Key revoked.";
  } else {
    return;
  }
  button.disabled = true;
  if (response.ok) await refreshAccounts(done);
  else {
    button.disabled = false;
    accountsStatus.textContent = `Failed: ${await errorText(response)}`;
  }
});

document.getElementById("new-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target;
  const body = { username: f.elements.username.value.trim(), password: f.elements.password.value, role: f.elements.role.value };
  const response = await call("/api/admin/users", "POST", body);
  if (response.ok) {
    f.reset();
    await refreshAccounts(`Created ${body.username} (${body.role}).`);
  } else {
    accountsStatus.textContent = `Not created: ${await errorText(response)}`;
  }
});

if (credentials()) start();
