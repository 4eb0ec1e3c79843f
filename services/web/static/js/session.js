// With sign-in on: ask every few seconds whether the session's token still works, and go to the
// login page once it does not (revoked or expired). Closing the page also ends its live streams.

const EVERY_MS = 1000;

async function check() {
  try {
    const response = await fetch("/api/session", { headers: { accept: "application/json" }, cache: "no-store" });
    if (response.status === 401) {
      location.href = `/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      return;
    }
  } catch {
    // the web service is unreachable: keep asking
  }
  setTimeout(check, EVERY_MS);
}

setTimeout(check, EVERY_MS);
