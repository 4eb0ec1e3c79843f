#!/usr/bin/env sh
# The headless Chromium the UI tests (tests/ui) drive: Debian's chromium-headless-shell, installed
# with apt when missing and running as root. `playwright install` cannot download browsers here.
set -eu
for name in chromium-headless-shell chromium; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium-headless-shell for the UI tests …"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell >/dev/null
  exit 0
fi
echo "The UI tests need a headless Chromium: install Debian's chromium-headless-shell (as root:" >&2
echo "apt-get install chromium-headless-shell) or put a chromium binary on PATH." >&2
exit 1
