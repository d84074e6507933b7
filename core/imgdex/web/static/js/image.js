// The image page: zoom, previous/next with the arrow keys, descriptions, delete.
import { errorText, rememberedList, send } from "./app.js";

const pager = document.getElementById("pager");
const sha = pager.dataset.sha;

// Previous and next of the list it was opened from (remembered by app.js).
const list = rememberedList();
const position = list ? list.shas.indexOf(sha) : -1;
if (position >= 0) {
  document.getElementById("back").href = list.from;
  for (const [id, step] of [["prev", -1], ["next", 1]]) {
    const other = list.shas[position + step];
    if (other) {
      const link = document.getElementById(id);
      link.href = `/images/${other}`;
      link.hidden = false;
    }
  }
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  const t = event.target;
  if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
  const link = event.key === "ArrowLeft" ? document.getElementById("prev")
    : event.key === "ArrowRight" ? document.getElementById("next") : null;
  if (link && !link.hidden) {
    event.preventDefault();
    location.href = link.href;
  }
});

const zoom = document.getElementById("zoom");
zoom.addEventListener("click", () => {
  const on = zoom.getAttribute("aria-pressed") !== "true";
  zoom.setAttribute("aria-pressed", String(on));
  zoom.closest(".viewer").classList.toggle("zoomed", on);
});

const status = (id, text) => { document.getElementById(id).textContent = text; };

async function refreshDescriptions(message) {
  const response = await fetch(`/images/${sha}/descriptions-panel`);
  const html = await response.text();
  const old = document.getElementById("descriptions");
  old.insertAdjacentHTML("afterend", html);
  old.remove();
  status("desc-status", message);
  document.getElementById("desc-title").focus();
}

async function putDescription(method, content) {
  const response = await send(`/api/images/${sha}/descriptions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ method, content }),
  });
  if (!response.ok) throw new Error(await errorText(response));
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  if (!form.matches("#desc-add, .desc-edit")) return;
  event.preventDefault();
  const method = form.matches("#desc-add") ? form.elements.method.value.trim() : form.dataset.method;
  try {
    status("desc-status", "Saving…");
    await putDescription(method, form.elements.content.value);
    await refreshDescriptions(`Saved the ${method} description.`);
  } catch (error) {
    status("desc-status", `Not saved: ${error.message}`);
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-delete-description]") : null;
  if (!button) return;
  const method = button.dataset.deleteDescription;
  if (!confirm(`Delete the ${method} description?`)) return;
  const response = await send(`/api/images/${sha}/descriptions/${encodeURIComponent(method)}`, { method: "DELETE" });
  if (response.ok) await refreshDescriptions(`Deleted the ${method} description.`);
  else status("desc-status", `Not deleted: ${await errorText(response)}`);
});

document.getElementById("delete-image")?.addEventListener("click", async () => {
  if (!confirm("Delete this image? Uploading the same file again restores it.")) return;
  const response = await send(`/api/images/${sha}`, { method: "DELETE" });
  if (response.ok) location.href = document.getElementById("back").getAttribute("href") || "/";
  else status("image-status", `Not deleted: ${await errorText(response)}`);
});
