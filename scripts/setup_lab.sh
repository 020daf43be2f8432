#!/usr/bin/env bash
# What the JupyterLab extension's build and browser tests need, installed only when missing:
# Debian chromium (never a browser downloaded by a tool), the extension's npm packages (npm ci from
# package-lock.json), the built extension (its TypeScript types generated from openapi.yaml first), and its links
# into the venv so `jupyter lab` loads it.
# Idempotent: a second run, or a run over a broken earlier install, leaves the same working state.
# Usage: scripts/setup_lab.sh [VENV]   (default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(cd "${1:-.venv}" && pwd)"
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "Debian chromium is missing: sudo apt-get install chromium" >&2; exit 1
  fi
fi
EXT=extensions/aiworkbench-lab
if [ ! -f "$EXT/node_modules/.package-lock.json" ] || [ "$EXT/package-lock.json" -nt "$EXT/node_modules/.package-lock.json" ]; then
  (cd "$EXT" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The build writes the panel's TypeScript types from openapi.yaml first (npm run build:types), then compiles and bundles.
if [ ! -f "$EXT/labextension/static/style.js" ] || [ -n "$(find "$EXT/src" "$EXT/style" "$EXT/package.json" "$EXT/openapi.yaml" -newer "$EXT/labextension/package.json" -print -quit)" ]; then
  (cd "$EXT" && PATH="$VENV/bin:$PATH" npm run build --silent)
fi
# The venv's copy of the extension becomes a link to the build, as `jupyter labextension develop --overwrite` does.
# The editable install leaves a real directory there (holding install.json, and a copy of the build if one existed
# when pip ran); `ln -sfn` into a directory would put the link *inside* it, so a directory is removed first.
LABEXT="$VENV/share/jupyter/labextensions/aiworkbench-lab"
# the build makes no install.json: one there was written through the link by a reinstall (`pip install -e .`), and
# the wheel would then carry two (its own, from the extension's folder)
rm -f "$EXT/labextension/install.json"
mkdir -p "$VENV/share/jupyter/labextensions" "$VENV/etc/jupyter/jupyter_server_config.d" \
  "$VENV/share/jupyter/lab/settings/overrides.d"
if [ -d "$LABEXT" ] && [ ! -L "$LABEXT" ]; then
  rm -rf "$LABEXT"
fi
ln -sfn "$PWD/$EXT/labextension" "$LABEXT"
cp jupyter-config/jupyter_server_config.d/aiworkbench.json "$VENV/etc/jupyter/jupyter_server_config.d/"
# Lab setting defaults of the project (no "get notified about official Jupyter news?" prompt); users may override.
cp jupyter-config/lab-settings/overrides.d/aiworkbench.json "$VENV/share/jupyter/lab/settings/overrides.d/"
if [ ! -f "$LABEXT/package.json" ]; then
  echo "setup_lab.sh: $LABEXT/package.json is missing after linking; is $EXT/labextension built?" >&2; exit 1
fi
