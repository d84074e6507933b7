// The gallery's multi-select: tick thumbnails, then tag them, add them to an album or
// move them to the trash in one request each (the bulk APIs are all-or-nothing).
import { errorText, send } from "./app.js";

const form = document.getElementById("bulk");
const grid = document.getElementById("grid");

function picked() {
  return [...grid.querySelectorAll("input[name=pick]:checked")].map((box) => box.value);
}

function count() {
  const n = picked().length;
  document.getElementById("selected-count").textContent =
    n ? `${n} image${n === 1 ? "" : "s"} selected` : "None selected";
}

const say = (text) => { document.getElementById("bulk-status").textContent = text; };

async function post(url, method, body) {
  const response = await send(url, {
    method,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

if (form) {
  grid.addEventListener("change", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.name === "pick") {
      event.target.closest(".card").classList.toggle("picked", event.target.checked);
      count();
    }
  });
  document.getElementById("select-none").addEventListener("click", () => {
    for (const box of grid.querySelectorAll("input[name=pick]:checked")) {
      box.checked = false;
      box.closest(".card").classList.remove("picked");
    }
    count();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter?.value;
    const images = picked();
    if (!images.length) {
      say("Select images first (the boxes on the thumbnails).");
      return;
    }
    try {
      if (action === "tag") {
        const add = form.elements.tag.value.split(",").map((t) => t.trim()).filter(Boolean);
        if (!add.length) { say("Type a tag to add."); form.elements.tag.focus(); return; }
        await post("/api/tags/bulk", "POST", { images, add });
        say(`Tagged ${images.length} image${images.length === 1 ? "" : "s"}: ${add.join(", ")}.`);
        form.elements.tag.value = "";
      } else if (action === "album") {
        const select = form.elements.album;
        const body = await post(`/api/albums/${select.value}/images`, "POST", { images });
        say(`Added ${body.changed} to ${select.selectedOptions[0].textContent}.`);
      } else if (action === "trash") {
        if (!confirm(`Move ${images.length} image(s) to the trash?`)) return;
        for (const id of images) {
          const response = await send(`/api/images/${id}`, { method: "DELETE" });
          if (!response.ok) throw new Error(await errorText(response));
          grid.querySelector(`input[name=pick][value="${id}"]`)?.closest(".card")?.remove();
        }
        say(`Moved ${images.length} to the trash.`);
        count();
      }
    } catch (error) {
      say(`Not done: ${error.message}`);
    }
  });
}

// The filters' fold (only shown on narrow screens; the form is always open on wider ones).
document.getElementById("filters-toggle")?.addEventListener("click", (event) => {
  const button = event.currentTarget;
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
});
