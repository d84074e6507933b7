// Search by image: drop, paste or pick a file; the server renders the results grid.
import { errorText, send } from "./app.js";

const drop = document.getElementById("query-drop");
const input = document.getElementById("query-file");
const preview = document.getElementById("query-preview");
const status = document.getElementById("query-status");

async function searchBy(file) {
  if (!file || !file.type.startsWith("image/")) {
    status.textContent = "That is not an image.";
    return;
  }
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `Query image ${file.name || "from the clipboard"}`;
  preview.hidden = false;
  status.textContent = "Searching…";
  const body = new FormData();
  body.append("file", file, file.name || "pasted.png");
  const response = await send("/search/image", { method: "POST", body });
  if (!response.ok) {
    status.textContent = `Search failed: ${await errorText(response)}`;
    return;
  }
  const html = await response.text();
  const old = document.getElementById("results");
  old.insertAdjacentHTML("afterend", html);
  old.remove();
  status.textContent = "Results for the query image below.";
}

input.addEventListener("change", () => searchBy(input.files[0]));
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  searchBy(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) {
    event.preventDefault();
    searchBy(item.getAsFile());
  }
});
