#!/usr/bin/env bash
# `npm start`: serves examples/ in a local VS Code (code-server) on 127.0.0.1 with this extension
# installed from a freshly packaged VSIX, and prints the URL to open. Ctrl-C stops it.
set -u
source "$(dirname "$0")/common.sh"
bash "$ROOT/scripts/vscode-host/setup.sh" || exit 1
cd "$ROOT" && npm run --silent package >/tmp/kvm-mmu-package.log 2>&1 || { cat /tmp/kvm-mmu-package.log; false; } || { echo "packaging the extension failed" >&2; exit 1; }
RUN=${KVM_MMU_SERVE_DIR:-$(mktemp -d /tmp/kvm-mmu-serve.XXXXXX)}
PORT=${PORT:-$(free_port)}
mkdir -p "$RUN/exts"
PATH=$N24:$PATH node "$TOOLS/node_modules/code-server/out/node/entry.js" --extensions-dir "$RUN/exts" \
  --install-extension "$ROOT/dist/kvm-mmu-debugger.vsix" --force > "$RUN/install.log" 2>&1 ||
  { cat "$RUN/install.log"; exit 1; }
trap 'stop_code_server' EXIT INT TERM
start_code_server "$RUN" "$PORT" || exit 1
echo "KVM MMU Debugger is running in VS Code at: http://127.0.0.1:$PORT/?folder=$ROOT/examples"
echo "(open it in a browser; Ctrl-C to stop)"
wait "$SPID"
