// Every page: "/" focuses the search box; a grid remembers its order for the image page.

const LIST_KEY = "imgdex:list";

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) return;
  const box = document.querySelector("[data-search-box]");
  if (box) {
    event.preventDefault();
    box.focus();
    box.select();
  }
});

// The image page's previous/next follow the grid the image was opened from.
document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest("a[data-sha]") : null;
  if (!link) return;
  const grid = link.closest("[data-list]");
  if (!grid) return;
  const shas = [...grid.querySelectorAll("a[data-sha]")].map((a) => a.dataset.sha);
  sessionStorage.setItem(
    LIST_KEY,
    JSON.stringify({ shas, from: location.pathname + location.search }),
  );
});

export function rememberedList() {
  try {
    const value = JSON.parse(sessionStorage.getItem(LIST_KEY) || "null");
    return value && Array.isArray(value.shas) ? value : null;
  } catch {
    return null;
  }
}

// The server's JSON error shape {"status_code", "error", "detail"} as one sentence.
export async function errorText(response) {
  try {
    const body = await response.json();
    return body.detail || body.error || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// CSRF (double submit): requests that the session cookie authenticates echo the
// `csrftoken` cookie in X-CSRFToken. Every unsafe request of the pages goes through here.
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function withCsrf(headers = {}) {
  const token = csrfToken();
  return token ? { ...headers, "X-CSRFToken": token } : { ...headers };
}

// fetch() with the CSRF header on every call (harmless on safe methods).
export function send(url, options = {}) {
  return fetch(url, { ...options, headers: withCsrf(options.headers || {}) });
}

// htmx requests, too (htmx is a classic script: it may load after this module).
document.addEventListener("htmx:configRequest", (event) => {
  const token = csrfToken();
  if (token) event.detail.headers["X-CSRFToken"] = token;
});

document.getElementById("logout")?.addEventListener("click", async (event) => {
  event.currentTarget.disabled = true;
  await send("/api/auth/logout", { method: "POST" });
  location.href = "/login";
});
