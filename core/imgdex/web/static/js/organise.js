// The Albums, album, Trash and Duplicates pages: each button calls the JSON API, then
// the page shows the outcome (or reloads when the grid changed shape).
import { errorText, send } from "./app.js";

const say = (text) => { document.getElementById("albums-status").textContent = text; };

async function call(url, method, body) {
  const response = await send(url, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

document.getElementById("album-create")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.elements.name.value.trim();
  const description = form.elements.description.value.trim();
  try {
    const album = await call("/api/albums", "POST", description ? { name, description } : { name });
    location.href = `/albums/${album.id}`;
  } catch (error) {
    say(`Not created: ${error.message}`);
  }
});

const grid = document.getElementById("grid");
const albumId = grid?.dataset.album;

document.addEventListener("click", async (event) => {
  const target = event.target instanceof Element ? event.target.closest("button") : null;
  if (!target) return;
  try {
    if (target.dataset.cover && albumId) {
      await call(`/api/albums/${albumId}`, "PATCH", { cover: target.dataset.cover });
      for (const b of document.querySelectorAll("[data-cover]")) b.setAttribute("aria-pressed", String(b === target));
      say("Cover chosen.");
    } else if (target.dataset.takeOut && albumId) {
      await call(`/api/albums/${albumId}/images`, "DELETE", { images: [target.dataset.takeOut] });
      target.closest(".card").remove();
      say("Removed from the album (the image stays in the library).");
    } else if (target.id === "album-delete" && albumId) {
      if (!confirm("Delete this album? Its images stay in the library.")) return;
      await call(`/api/albums/${albumId}`, "DELETE");
      location.href = "/albums";
    } else if (target.dataset.restore) {
      await call(`/api/images/${target.dataset.restore}/restore`, "POST");
      target.closest(".card").remove();
      say("Restored to the library.");
    } else if (target.id === "trash-empty") {
      const total = document.getElementById("count").textContent.split(" ")[0];
      if (!confirm(`Delete ${total} image(s) for good? This cannot be undone.`)) return;
      target.disabled = true;
      // The whole trash, not just this page: a page at a time until it is empty.
      for (;;) {
        const page = await call("/api/images?deleted=only&limit=100", "GET");
        if (!page.images.length) break;
        for (const image of page.images) await call(`/api/images/${image.sha256}?hard=true`, "DELETE");
        say(`Deleting for good… ${page.total - page.images.length} left.`);
      }
      location.reload();
    } else if (target.dataset.keep) {
      // The other cards of its group (listed once in the page, not on every button).
      const members = target.closest(".group").querySelectorAll("[data-member]");
      const trash = [...members].map((card) => card.dataset.member).filter((sha) => sha !== target.dataset.keep);
      await call("/api/duplicates/resolve", "POST", { keep: target.dataset.keep, trash });
      target.closest(".group").remove();
      say(`Kept one image; ${trash.length} moved to the trash.`);
    }
  } catch (error) {
    say(`Not done: ${error.message}`);
  }
});
