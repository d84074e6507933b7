// An album's share links (album page, editors and admins): create one (optional expiry
// and password), show its URL once with a copy button, list the live ones, revoke.
import { errorText, send } from "./app.js";

const section = document.getElementById("sharing");
const form = document.getElementById("share-create");
const panel = document.getElementById("share-panel");
const once = document.getElementById("share-once");
const url = document.getElementById("share-url");
const say = (text) => { document.getElementById("share-status").textContent = text; };
const api = `/api/albums/${section?.dataset.album}/shares`;

async function refresh(message) {
  const response = await fetch(`/albums/${section.dataset.album}/shares/panel`);
  if (!response.ok) {
    say(`Could not list the share links: ${await errorText(response)}`);
    return;
  }
  panel.innerHTML = await response.text();
  if (message) say(message);
}

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  // datetime-local is the visitor's local time without a zone; the API wants one.
  if (form.elements.expires.value) body.expires_at = new Date(form.elements.expires.value).toISOString();
  if (form.elements.password.value) body.password = form.elements.password.value;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await send(api, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      say(`Not created: ${await errorText(response)}`);
      return;
    }
    const made = await response.json();
    form.reset();
    once.hidden = false;
    url.value = new URL(made.url, location.origin).href;
    url.focus();
    url.select();
    await refresh(`Created share link #${made.id}${made.has_password ? " (with a password)" : ""}.`);
  } finally {
    button.disabled = false;
  }
});

document.getElementById("share-copy")?.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(url.value);
    say("Link copied.");
  } catch {
    // No clipboard access (permission, or not a secure context): leave it selected.
    url.focus();
    url.select();
    say("Could not copy: the link is selected, copy it with Ctrl+C (⌘C).");
  }
});

panel?.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button[data-revoke-share]") : null;
  if (!button) return;
  const id = button.dataset.revokeShare;
  if (!confirm(`Revoke share link #${id}? It stops working at once.`)) return;
  const response = await send(`${api}/${id}`, { method: "DELETE" });
  if (response.ok) await refresh(`Share link #${id} revoked.`);
  else say(`Not revoked: ${await errorText(response)}`);
});

if (section) refresh();
