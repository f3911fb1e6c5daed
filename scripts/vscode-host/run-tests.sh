#!/usr/bin/env bash
# Runs the mocha suite in test/vscode/suite inside a real VS Code (code-server's Node extension host),
# opened in headless Debian Chromium by playwright-core. Prints `vscode: N passed, N failed`.
# Where a desktop VS Code can be downloaded, `npx vscode-test` runs the same suite (.vscode-test.mjs).
set -u
source "$(dirname "$0")/common.sh"
bash "$ROOT/scripts/vscode-host/setup.sh" || exit 1
[ -f "$ROOT/out/test/vscode/suite/index.js" ] || { echo "build first: npm run build" >&2; exit 1; }
RUN=$(mktemp -d /tmp/kvm-mmu-vscode.XXXXXX)
PORT=$(free_port)
WS=${VSCODE_TEST_WORKSPACE:-$ROOT/examples}
mkdir -p "$WS"
trap 'stop_code_server; rm -rf "$RUN"' EXIT
start_code_server "$RUN" "$PORT" --vscode-option enable-smoke-test-driver || exit 1
RESULTS=$RUN/results.json
ARTIFACTS=${TEST_ARTIFACTS:-$ROOT/test-artifacts}
mkdir -p "$ARTIFACTS"
# Screenshot requests from an earlier run must not answer this run's.
rm -rf "$ARTIFACTS/.requests"
ENVJSON=$(node -e 'console.log(JSON.stringify({TEST_RESULTS_FILE:process.argv[1],TEST_ARTIFACTS:process.argv[2],KVM_MMU_ROOT:process.argv[3]}))' "$RESULTS" "$ARTIFACTS" "$ROOT")
NODE_PATH=$TOOLS/node_modules XDG_CONFIG_HOME=$RUN/xdg QUIET_LOG=${QUIET_LOG:-1} \
  node "$ROOT/scripts/vscode-host/driver.js" "$PORT" "$ROOT" "$ROOT/out/test/vscode/suite" "$WS" "$ENVJSON"
RC=$?
if [ -f "$RESULTS" ]; then
  cp "$RESULTS" "$ARTIFACTS/vscode-results.json"
  node -e 'r=require(process.argv[1]);for(const f of r.failed)console.log(`  FAILED ${f.title}: ${f.error}`);console.log(`vscode: ${r.passes} passed, ${r.failures} failed`)' "$RESULTS"
fi
[ "$RC" -ne 0 ] && { echo "VS Code test run exited $RC; server log:"; tail -30 "$RUN/server.log"; }
exit "$RC"
