#!/usr/bin/env bash
# What the JupyterLab extension's build and browser tests need, installed only when missing:
# Debian chromium (never a browser downloaded by a tool), the extension's npm packages (npm ci from
# package-lock.json), the built extension, and its links into the venv so `jupyter lab` loads it.
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
if [ ! -f "$EXT/labextension/static/style.js" ] || [ -n "$(find "$EXT/src" "$EXT/style" "$EXT/package.json" -newer "$EXT/labextension/package.json" -print -quit)" ]; then
  (cd "$EXT" && PATH="$VENV/bin:$PATH" npm run build --silent)
fi
mkdir -p "$VENV/share/jupyter/labextensions" "$VENV/etc/jupyter/jupyter_server_config.d"
ln -sfn "$PWD/$EXT/labextension" "$VENV/share/jupyter/labextensions/aiworkbench-lab"
cp jupyter-config/jupyter_server_config.d/aiworkbench.json "$VENV/etc/jupyter/jupyter_server_config.d/"
