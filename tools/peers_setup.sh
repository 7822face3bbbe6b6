#!/usr/bin/env bash
# Install the peers `make bench-peers` measures helixlab against, each in a folder of its
# own so that their pins never touch .venv, idempotently (only what is missing):
#   - LiteLLM's proxy (`litellm[proxy]` from PyPI) into a venv, $PEERS (.venv-peers), made
#     with the same base Python as .venv;
#   - Portkey's AI gateway (`@portkey-ai/gateway` from npm) into $PORTKEY_DIR (.peers/portkey),
#     when npm is on PATH (without it the benchmark says Portkey was not measured).
# Overridable for tests: PYTHON (makes the venv), NPM, PEERS, PORTKEY_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'helixlab bench-peers: %s\n' "$*" >&2; }

PEERS=${PEERS:-.venv-peers}
PORTKEY_DIR=${PORTKEY_DIR:-.peers/portkey}
NPM=${NPM:-npm}

if [[ ! -x "$PEERS/bin/litellm" ]]; then
    python=${PYTHON:-}
    if [[ -z "$python" ]]; then  # .venv's own interpreter, not the venv's (a venv in a venv)
        python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
    fi
    say "installing LiteLLM's proxy (litellm[proxy]) into $PEERS (a few minutes, once)"
    rm -rf "$PEERS"  # a half-made venv from an interrupted run
    "$python" -m venv "$PEERS"
    "$PEERS/bin/pip" install --quiet 'litellm[proxy]'
    if [[ ! -x "$PEERS/bin/litellm" ]]; then
        say "pip installed litellm[proxy] but $PEERS/bin/litellm is missing"
        exit 1
    fi
fi

if [[ ! -f "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" ]]; then
    if command -v "$NPM" >/dev/null; then
        say "installing Portkey's gateway (@portkey-ai/gateway) into $PORTKEY_DIR"
        mkdir -p "$PORTKEY_DIR"
        # its own package.json, so npm installs here and not into a parent folder's project
        [[ -f "$PORTKEY_DIR/package.json" ]] || echo '{"private": true}' >"$PORTKEY_DIR/package.json"
        (cd "$PORTKEY_DIR" && "$NPM" install --no-audit --no-fund --loglevel=error @portkey-ai/gateway)
    else
        say "npm is not on PATH: Portkey's gateway is not installed and will not be measured"
        say "(install Node.js and npm, e.g. 'sudo apt-get install nodejs npm', then run again)"
    fi
fi
