#!/usr/bin/env bash
# Makes sure headless Chromium is there for the HTML report's browser test (tests/support/browser.py).
# Used by `make test` and `.ci/run`: installs Debian's `chromium` when it is missing and this user can
# (root, or passwordless sudo, with apt-get). Elsewhere it says how to install it, or how to skip the test.
set -euo pipefail
if [ "${TFPIPE_SKIP_BROWSER:-}" = "1" ] || command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    sudo="none"
  fi
  if [ "$sudo" != "none" ]; then
    echo "installing Debian's chromium for the browser test ..."
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
    exit 0
  fi
fi
echo "Chromium is missing and cannot be installed here (needs apt-get as root): install it" \
     "(Debian: apt-get install chromium), or run with TFPIPE_SKIP_BROWSER=1 to skip the browser test." >&2
exit 1
