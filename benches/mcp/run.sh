#!/usr/bin/env bash
# tools/call with a 2 KiB body vs a plain POST of the same size, through writ
# (release, one worker) in front of nginx `return 200`, interleaved rounds of
# wrk (1 thread, 8 connections, 6 s). Needs nginx and wrk; ports 19310-19312.
#   ROUNDS=5  WRIT_BIN=target/release/writ  bash benches/mcp/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/mcp
bin="${WRIT_BIN:-target/release/writ}"
rounds="${ROUNDS:-5}"
dir="$(mktemp -d)"
mkdir -p "$dir/body"
sed "s|@DIR@|$dir|g" "$here/nginx.conf.in" > "$dir/nginx.conf"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
def call(note):
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "run_job", "arguments": {"tenant": "acme", "note": note}}},
                      separators=(",", ":"))
body = call("x" * (2048 - len(call(""))))
assert len(body) == 2048
open(f"{d}/mcp.json", "w").write(body)
open(f"{d}/plain.json", "w").write('{"note":"' + "x" * (2048 - 11) + '"}')
PY
nginx -c "$dir/nginx.conf" -p "$dir/"
"$bin" run --config "$here/writ.yaml" > "$dir/writ.log" 2>&1 &
writ_pid=$!
trap 'kill "$writ_pid"; kill "$(cat "$dir/nginx.pid")"; rm -rf "$dir"' EXIT
sleep 1
WRK_TOKEN="$("$bin" token --key config/demo/demo-key.pem --iss https://login.example.com/ \
  --aud bench --sub alice --scope items:run --claim tenant=acme --ttl 1h)"
export WRK_TOKEN
for r in $(seq "$rounds"); do
  for kind in plain mcp; do
    if [ "$kind" = plain ]; then url=http://127.0.0.1:19311/items/acme/run; else url=http://127.0.0.1:19311/mcp; fi
    echo "round $r $kind $(WRK_BODY="$dir/$kind.json" wrk -t1 -c8 -d6s -s "$here/post.lua" "$url" | grep RESULT)"
  done
done
