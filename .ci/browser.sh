#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for tests/test_interactive.py and
# bench/interactive.py (Selenium itself comes with the test extras: pip install '.[test]').
# Idempotent: does nothing when both are installed.
set -euo pipefail

PACKAGES=(chromium chromium-driver)
LOG=${TMPDIR:-/tmp}/nnmanifold-browser-install.log

usage() {
    cat >&2 <<EOF
usage: $0 install|status

  install  apt-get install ${PACKAGES[*]} if chromium or chromedriver is missing (root)
  status   print the installed versions; exit 1 if either is missing

Exit status 3: apt-get could not install them (log in $LOG).
EOF
    exit 2
}

die() {
    echo "browser.sh: $1" >&2
    exit "${2:-1}"
}

installed() {
    command -v chromium >/dev/null && command -v chromedriver >/dev/null
}

status() {
    if ! installed; then
        echo "chromium or chromedriver not installed (run $0 install as root)"
        return 1
    fi
    # Debian's chromium wrapper prints a harmless shell warning on stderr; keep the versions.
    echo "$(chromium --version 2>/dev/null); $(chromedriver --version 2>/dev/null)"
}

install() {
    if installed; then
        status
        return
    fi
    ((EUID == 0)) || die "must run as root (it installs ${PACKAGES[*]} with apt-get)"
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${PACKAGES[@]}"
    } >"$LOG" 2>&1 || die "apt-get could not install ${PACKAGES[*]}: $(tail -n 5 "$LOG")" 3
    installed || die "${PACKAGES[*]} installed but chromium or chromedriver is not on PATH" 3
    status
}

[[ $# -eq 1 ]] || usage
# One install at a time: concurrent test sessions may both find the browser missing.
exec 9<"$0"
flock 9
case $1 in
install) install ;;
status) status ;;
*) usage ;;
esac
