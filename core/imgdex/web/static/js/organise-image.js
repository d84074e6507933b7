// The image page's organising: tags (a person's, or a describer model's marked "AI"),
// favourite, rating, add to album, restore from the trash, and similar images.
import { errorText, send } from "./app.js";

const section = document.getElementById("organise");
const sha = section.dataset.sha;
const say = (text) => { document.getElementById("organise-status").textContent = text; };

async function call(url, method, body) {
  const response = await send(url, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

function renderTags(tags) {
  const list = document.getElementById("tags");
  const canWrite = Boolean(document.getElementById("tag-add"));
  list.replaceChildren(...tags.map((t) => {
    const li = document.createElement("li");
    li.className = t.source === "user" ? "tag" : "tag ai";
    li.dataset.tag = t.tag;
    const link = document.createElement("a");
    link.href = `/?tag=${encodeURIComponent(t.tag)}`;
    link.textContent = t.tag;
    li.append(link);
    if (t.source !== "user") {
      const by = document.createElement("small");
      by.className = "by";
      by.textContent = `AI · ${t.source}`;
      li.append(" ", by);
    }
    if (canWrite) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.dataset.removeTag = t.tag;
      remove.setAttribute("aria-label", `Remove the tag ${t.tag}`);
      remove.textContent = "×";
      li.append(" ", remove);
    }
    return li;
  }));
  document.getElementById("no-tags")?.remove();
}

document.getElementById("tag-add")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = event.currentTarget.elements.tag;
  const tags = input.value.split(",").map((t) => t.trim()).filter(Boolean);
  if (!tags.length) return;
  try {
    const body = await call(`/api/images/${sha}/tags`, "POST", { tags });
    renderTags(body.tags);
    input.value = "";
    say(`Tagged: ${tags.join(", ")}.`);
  } catch (error) {
    say(`Not tagged: ${error.message}`);
  }
});

document.getElementById("new-tag")?.addEventListener("focus", async () => {
  const list = document.getElementById("known-tags");
  if (list.dataset.loaded) return;
  list.dataset.loaded = "1";
  const response = await fetch("/api/tags?limit=200");
  if (!response.ok) return;
  const body = await response.json();
  list.replaceChildren(...body.tags.map((t) => Object.assign(document.createElement("option"), { value: t.tag })));
}, { once: true });

section.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-remove-tag]") : null;
  if (!button) return;
  const tag = button.dataset.removeTag;
  try {
    const body = await call(`/api/images/${sha}/tags/${encodeURIComponent(tag)}`, "DELETE");
    renderTags(body.tags);
    say(`Removed the tag ${tag}.`);
    document.getElementById("new-tag")?.focus();
  } catch (error) {
    say(`Not removed: ${error.message}`);
  }
});

const favorite = document.getElementById("favorite");
favorite?.addEventListener("click", async () => {
  const on = favorite.getAttribute("aria-pressed") !== "true";
  try {
    const image = await call(`/api/images/${sha}`, "PATCH", { favorite: on });
    favorite.setAttribute("aria-pressed", String(image.favorite));
    favorite.textContent = image.favorite ? "★ Favourite" : "☆ Favourite";
    say(image.favorite ? "Marked as a favourite." : "No longer a favourite.");
  } catch (error) {
    say(`Not changed: ${error.message}`);
  }
});

document.getElementById("rating")?.addEventListener("change", async (event) => {
  const rating = Number(event.currentTarget.value);
  try {
    const image = await call(`/api/images/${sha}`, "PATCH", { rating });
    say(image.rating ? `Rated ${image.rating} of 5.` : "Rating cleared.");
  } catch (error) {
    say(`Not rated: ${error.message}`);
  }
});

document.getElementById("album-add")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const select = event.currentTarget.elements.album;
  const name = select.selectedOptions[0]?.textContent || "the album";
  try {
    const body = await call(`/api/albums/${select.value}/images`, "POST", { images: [sha] });
    const link = document.createElement("a");
    link.href = `/albums/${select.value}`;
    link.textContent = `Open ${name}`;
    const status = document.getElementById("organise-status");
    status.replaceChildren(body.changed ? `Added to ${name}. ` : `Already in ${name}. `, link);
  } catch (error) {
    say(`Not added: ${error.message}`);
  }
});

document.getElementById("restore-image")?.addEventListener("click", async (event) => {
  event.currentTarget.disabled = true;
  try {
    await call(`/api/images/${sha}/restore`, "POST");
    location.reload();
  } catch (error) {
    event.currentTarget.disabled = false;
    say(`Not restored: ${error.message}`);
  }
});

// Similar images: a strip of thumbnails (none when no image index knows it).
async function similar() {
  const strip = document.getElementById("similar");
  const response = await fetch(`/api/images/${sha}/similar?top_k=8`);
  const body = response.ok ? await response.json() : { results: [] };
  const items = (body.results || []).map((r) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/images/${r.sha256}`;
    link.dataset.sha = r.sha256;
    const img = document.createElement("img");
    img.src = `/api/images/${r.sha256}/thumbnail`;
    img.alt = r.matched_text || `Similar image, score ${r.score.toFixed(3)}`;
    img.loading = "lazy";
    img.width = 96;
    img.height = 96;
    link.append(img);
    li.append(link);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "hint";
    li.textContent = response.ok ? "No similar images found." : "Similar images are not available.";
    items.push(li);
  }
  strip.replaceChildren(...items);
}
similar();
