// The log-in form: JSON to POST /api/auth/login, then back to the page that asked.
import { errorText } from "./app.js";

const form = document.getElementById("login-form");
const status = document.getElementById("login-status");

// Only a path on this site: "//host" and "/\host" would leave it (no open redirect).
function nextPath() {
  const value = form.dataset.next || "/";
  return value.startsWith("/") && !value.startsWith("//") && !value.startsWith("/\\") ? value : "/";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  status.textContent = "Logging in…";
  try {
    const response = await fetch("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.elements.username.value.trim(), password: form.elements.password.value }),
    });
    if (response.ok) {
      status.textContent = "Logged in.";
      location.href = nextPath();
      return;
    }
    if (response.status === 429) {
      const wait = Number(response.headers.get("Retry-After")) || 0;
      status.textContent = `Too many failed attempts: try again in ${wait ? `${wait} seconds` : "a while"}.`;
    } else {
      status.textContent = `Not logged in: ${await errorText(response)}`;
    }
    form.elements.password.value = "";
    form.elements.password.focus();
  } catch {
    status.textContent = "Not logged in: the server did not answer.";
  } finally {
    button.disabled = false;
  }
});
