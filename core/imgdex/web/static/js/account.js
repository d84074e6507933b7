// The account page: one's own sessions (revoke) and API keys (create, shown once; revoke).
import { errorText, send } from "./app.js";

const panel = document.getElementById("account-panel");
const status = document.getElementById("account-status");
const form = document.getElementById("new-key");
const shown = document.getElementById("new-key-shown");

async function refresh(message) {
  const response = await fetch("/account/panel");
  if (!response.ok) {
    status.textContent = `Could not load sessions and keys: ${await errorText(response)}`;
    return;
  }
  panel.innerHTML = await response.text();
  if (message) status.textContent = message;
}

panel?.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button") : null;
  if (!button) return;
  if (button.dataset.revokeSession) {
    const current = button.hasAttribute("data-current");
    if (current && !confirm("Revoke this session? You will be logged out.")) return;
    const response = await send(`/api/auth/sessions/${encodeURIComponent(button.dataset.revokeSession)}`, { method: "DELETE" });
    if (response.ok && current) location.href = "/login";
    else if (response.ok) await refresh("Session revoked.");
    else status.textContent = `Not revoked: ${await errorText(response)}`;
  } else if (button.dataset.revokeKey) {
    if (!confirm("Revoke this API key? Requests with it fail at once.")) return;
    const response = await send(`/api/keys/${button.dataset.revokeKey}`, { method: "DELETE" });
    if (response.ok) await refresh("Key revoked.");
    else status.textContent = `Not revoked: ${await errorText(response)}`;
  }
});

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const scopes = [...form.querySelectorAll("input[name=scopes]:checked")].map((i) => i.value);
  const response = await send("/api/keys", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: form.elements.name.value.trim(), scopes }),
  });
  if (!response.ok) {
    status.textContent = `Not created: ${await errorText(response)}`;
    return;
  }
  const body = await response.json();
  form.reset();
  shown.hidden = false;
  const value = document.getElementById("new-key-value");
  value.value = body.key;
  value.focus();
  value.select();
  await refresh(`Created the key ${body.name}.`);
});

if (panel) refresh();
