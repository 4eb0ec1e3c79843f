// With sign-in on: ask every second whether the session's token still works, and go to the login
// page once it does not (revoked or expired); leaving the page also ends its live streams. A
// hidden tab does not ask; it asks again as soon as it is shown.

const EVERY_MS = 1000;
let timer = 0;

async function check() {
  clearTimeout(timer);
  if (document.visibilityState === "hidden") return;
  try {
    const response = await fetch("/api/session", { headers: { accept: "application/json" }, cache: "no-store" });
    if (response.status === 401) {
      location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      return;
    }
  } catch {
    // the web service is unreachable: keep asking
  }
  timer = setTimeout(check, EVERY_MS);
}

document.addEventListener("visibilitychange", check);
timer = setTimeout(check, EVERY_MS);
