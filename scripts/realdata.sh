#!/usr/bin/env bash
# The real image-text set (ShareBench-real) from Debian's packages: public-domain clip art captioned
# from its SVG metadata, and Noto Color Emoji glyphs with their Unicode names, groups and CLDR keywords.
#
#   scripts/realdata.sh install      install the packages if missing (apt-get, needs root)
#   scripts/realdata.sh build DIR [OPTIONS]
#                                    install if needed, then build DIR (images, CSVs, webdataset shards,
#                                    LICENSES/, manifest.json with the hashes); about 10 minutes on 2 cores;
#                                    OPTIONS go to `sharenas data build` (e.g. --clipart-png DIR)
#   scripts/realdata.sh check DIR    re-hash DIR's CSVs and shards against its manifest
#
# The same package versions give byte-identical CSVs and shards (see DIR/manifest.json).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openclipart-png openclipart-svg fonts-noto-color-emoji unicode-data unicode-cldr-core libraqm0)
PY="${SHARENAS_PYTHON:-.venv/bin/python}"

die() { echo "realdata.sh: $*" >&2; exit 1; }

missing() {
    local p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

install_packages() {
    local need
    need=$(missing)
    [ -z "$need" ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages ($need) and no apt-get; install them with your package manager"
    [ "$(id -u)" -eq 0 ] || die "missing packages: $(echo $need); run this script as root or 'sudo apt-get install $(echo $need)'"
    echo "realdata.sh: installing $(echo $need) from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >&2
}

case "${1:-}" in
    install) install_packages ;;
    build)
        [ -n "${2:-}" ] || die "usage: realdata.sh build DIR"
        install_packages
        [ -x "$PY" ] || die "$PY not found: run 'make venv' first (or set SHARENAS_PYTHON)"
        "$PY" -m nas.cli data build "$2" "${@:3}"
        ;;
    check)
        [ -n "${2:-}" ] || die "usage: realdata.sh check DIR"
        "$PY" -m nas.cli data check "$2"
        ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
