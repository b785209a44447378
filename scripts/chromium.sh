#!/usr/bin/env bash
# Headless Chromium from Debian's packages, to check that `sharenas report` pages render offline.
#
#   scripts/chromium.sh install        install chromium if missing (apt-get, needs root)
#   scripts/chromium.sh path           print the browser's path (exit 1 if absent)
#   scripts/chromium.sh check FILE     load FILE headless; print the rendered DOM on stdout and the
#                                      browser's console messages on stderr
#   scripts/chromium.sh shot FILE PNG  screenshot FILE into PNG (1400x2400)
set -euo pipefail

browser() {
    local b
    for b in chromium chromium-browser; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
    done
    return 1
}

flags=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --disable-extensions
       --disable-background-networking --virtual-time-budget=15000)

case "${1:-}" in
    install)
        if browser >/dev/null; then exit 0; fi
        [ "$(id -u)" = 0 ] || { echo "chromium.sh: installing needs root (apt-get)" >&2; exit 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends chromium >&2
        ;;
    path) browser ;;
    check)
        [ -f "${2:-}" ] || { echo "chromium.sh: no such file: ${2:-}" >&2; exit 1; }
        "$(browser)" "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "file://$(realpath "$2")"
        ;;
    shot)
        [ -f "${2:-}" ] && [ -n "${3:-}" ] || { echo "usage: chromium.sh shot FILE PNG" >&2; exit 1; }
        "$(browser)" "${flags[@]}" --window-size=1400,2400 --screenshot="$3" "file://$(realpath "$2")" >&2
        ;;
    *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
