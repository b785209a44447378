#!/usr/bin/env bash
# Builds the wheel and sdist (python -m build), checks them with twine, and installs the wheel into a
# fresh venv that already has torch: pip's resolver must keep that torch (same version, same files),
# the wheel must hold the packages search_spaces, trainer and nas but not tests/ or experiments/,
# and the installed `sharenas presets` must run outside the checkout. Then the README's
# `pip install -e .` into the same venv, which must keep torch too.
# Usage: scripts/wheel_check.sh [PYTHON]   (default: .venv/bin/python, which gets the `dist` extra's tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
TORCH=$(sed -n 's/.*torch==\([0-9.]*\).*/\1/p' Makefile | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m pip install --quiet 'build>=1.2' 'twine>=5.0'
"$PY" -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$PY" -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)
"$PY" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")})
assert tops == ["nas", "search_spaces", "trainer"], f"the wheel's top-level entries are {tops}"
entry = next(n for n in names if n.endswith("entry_points.txt"))
assert "sharenas = nas.cli:app" in zipfile.ZipFile(sys.argv[1]).read(entry).decode()
print(f"wheel: {len(names)} files, top-level packages {', '.join(tops)}, console script sharenas")
EOF

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "torch==$TORCH"
# version, folder, and the inode and mtime of torch/__init__.py: a reinstall in place changes the last two
where='import os, torch; s = os.stat(torch.__file__); print(torch.__version__, os.path.dirname(torch.__file__), s.st_ino, s.st_mtime_ns)'
before=$("$work/venv/bin/python" -c "$where" 2>/dev/null)
# pip's resolver, then: torch must be the one installed before, untouched
kept() {
  local after
  after=$("$work/venv/bin/python" -c "$where" 2>/dev/null)
  # the packages pip installed, one a line ("open-clip-torch" and "torchvision" are not torch)
  if grep '^Installing collected packages:' "$work/install.log" | sed 's/^[^:]*://' | tr ',' '\n' | tr -d ' ' | grep -qx torch \
      || [ "$before" != "$after" ]; then
    echo "$1 replaced torch: before $before, after $after" >&2
    exit 1
  fi
  grep -E '^Requirement already satisfied: torch[ >=]' "$work/install.log"
  echo "torch kept by $1: $after"
}
"$work/venv/bin/python" -m pip install "$wheel" > "$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
kept "the wheel's install"
(cd "$work" && "$work/venv/bin/sharenas" presets)
"$work/venv/bin/python" -m pip install -e . > "$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
kept "pip install -e ."
(cd "$work" && "$work/venv/bin/sharenas" presets --size tiny > /dev/null)
echo "wheel check passed"
