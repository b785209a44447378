#!/usr/bin/env bash
# The real image-text set (ShareBench-real) from Debian's packages: public-domain clip art captioned
# from its SVG metadata, and Noto Color Emoji glyphs with their Unicode names, groups and CLDR keywords;
# with --sources also Tux Paint's stamps and Wesnoth's unit pictures with their descriptions.
#
#   scripts/realdata.sh install [--sources LIST]
#                                    install the packages if missing (apt-get, needs root)
#   scripts/realdata.sh build DIR [OPTIONS]
#                                    install if needed, then build DIR (images, CSVs, webdataset shards,
#                                    LICENSES/, manifest.json with the hashes); about 10 minutes on 2 cores;
#                                    OPTIONS go to `sharenas data build` (e.g. --clipart-png DIR, or
#                                    --sources clipart,emoji,tuxpaint,wesnoth; the default is clipart,emoji)
#   scripts/realdata.sh check DIR    re-hash DIR's CSVs and shards against its manifest
#
# The same package versions give byte-identical CSVs and shards (see DIR/manifest.json).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openclipart-png openclipart-svg fonts-noto-color-emoji unicode-data unicode-cldr-core libraqm0)
# packages of the sources beyond the default ones, installed when --sources names them
declare -A SOURCE_PACKAGES=([tuxpaint]="tuxpaint-stamps-default librsvg2-bin" [wesnoth]="wesnoth-1.16-data")
PY="${SHARENAS_PYTHON:-.venv/bin/python}"

die() { echo "realdata.sh: $*" >&2; exit 1; }

# add the packages of the sources that `--sources LIST` (or `--sources=LIST`) names among the arguments
add_source_packages() {
    local list="" source
    while [ $# -gt 0 ]; do
        case "$1" in
            --sources) list="${2:-}"; shift ;;
            --sources=*) list="${1#--sources=}" ;;
        esac
        shift
    done
    for source in ${list//,/ }; do
        # shellcheck disable=SC2206
        [ -n "${SOURCE_PACKAGES[$source]:-}" ] && PACKAGES+=(${SOURCE_PACKAGES[$source]})
    done
    return 0
}

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
    install) add_source_packages "${@:2}"; install_packages ;;
    build)
        [ -n "${2:-}" ] || die "usage: realdata.sh build DIR"
        add_source_packages "${@:3}"
        install_packages
        [ -x "$PY" ] || die "$PY not found: run 'make venv' first (or set SHARENAS_PYTHON)"
        "$PY" -m nas.cli data build "$2" "${@:3}"
        ;;
    check)
        [ -n "${2:-}" ] || die "usage: realdata.sh check DIR"
        "$PY" -m nas.cli data check "$2"
        ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
