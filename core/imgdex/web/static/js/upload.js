// Upload: files or whole folders, one XHR progress bar per file and one overall.
import { csrfToken } from "./app.js";

const CONCURRENCY = 2;
const input = document.getElementById("files");
const drop = document.getElementById("upload-drop");
const sourceInput = document.getElementById("upload-source");
const section = document.getElementById("upload-progress");
const list = document.getElementById("upload-list");
const overall = document.getElementById("overall");
const overallText = document.getElementById("overall-text");

const state = { total: 0, loaded: new Map(), done: 0, count: 0, counts: { added: 0, duplicate: 0, rejected: 0 } };

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function updateOverall() {
  let loaded = 0;
  for (const n of state.loaded.values()) loaded += n;
  overall.max = Math.max(state.total, 1);
  overall.value = loaded;
  const { added, duplicate, rejected } = state.counts;
  overallText.textContent = `${state.done} of ${state.count} files done: ${added} added, ${duplicate} duplicate, ${rejected} rejected`;
}

function row(file, id) {
  const bar = el("progress", { max: Math.max(file.size, 1), value: 0, id: `p${id}` });
  const label = el("label", { htmlFor: `p${id}`, textContent: file.webkitRelativePath || file.relativePath || file.name });
  const outcome = el("span", { className: "outcome", textContent: "waiting" });
  const item = el("li", {}, label, bar, outcome);
  list.append(item);
  return { bar, outcome, item };
}

function link(sha, text) {
  return el("a", { href: `/images/${sha}`, textContent: text });
}

function send(file, id, ui) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const body = new FormData();
    body.append("file", file, file.name);
    if (sourceInput.value.trim()) body.append("source", sourceInput.value.trim());
    xhr.upload.addEventListener("progress", (event) => {
      ui.bar.value = event.loaded * (file.size / Math.max(event.total, 1));
      state.loaded.set(id, Math.min(event.loaded, file.size));
      ui.outcome.textContent = "uploading";
      updateOverall();
    });
    xhr.addEventListener("loadend", () => {
      state.loaded.set(id, file.size);
      ui.bar.value = ui.bar.max;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: reported below */ }
      ui.outcome.replaceChildren();
      if (xhr.status === 201 && body) {
        state.counts.added += 1;
        ui.item.dataset.outcome = "added";
        ui.outcome.append("added: ", link(body.sha256, "open"));
      } else if (xhr.status === 200 && body) {
        state.counts.duplicate += 1;
        ui.item.dataset.outcome = "duplicate";
        ui.outcome.append(body.restored ? "restored: " : "duplicate of ", link(body.sha256, body.restored ? "open" : "the existing image"));
      } else {
        state.counts.rejected += 1;
        ui.item.dataset.outcome = "rejected";
        const reason = body && body.detail ? body.detail : xhr.status ? `HTTP ${xhr.status}` : "network error";
        ui.outcome.textContent = `rejected: ${reason}`;
      }
      state.done += 1;
      updateOverall();
      resolve();
    });
    xhr.open("POST", "/api/images");
    const token = csrfToken();
    if (token) xhr.setRequestHeader("X-CSRFToken", token);
    xhr.send(body);
  });
}

async function uploadAll(files) {
  if (!files.length) return;
  section.hidden = false;
  const jobs = files.map((file) => {
    const id = state.count++;
    state.total += file.size;
    state.loaded.set(id, 0);
    return { file, id, ui: row(file, id) };
  });
  updateOverall();
  const queue = [...jobs];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) await send(job.file, job.id, job.ui);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

// Folders arrive as directory entries: walk them (readEntries answers in batches).
async function filesOf(entry, prefix = "") {
  if (entry.isFile) {
    const file = await new Promise((ok, fail) => entry.file(ok, fail));
    file.relativePath = prefix + file.name;
    return [file];
  }
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) break;
    for (const child of batch) out.push(...(await filesOf(child, `${prefix}${entry.name}/`)));
  }
  return out;
}

input.addEventListener("change", () => {
  uploadAll([...input.files]);
  input.value = "";
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const entries = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const files = entries.length
    ? (await Promise.all(entries.map((e) => filesOf(e)))).flat()
    : [...event.dataTransfer.files];
  uploadAll(files);
});
