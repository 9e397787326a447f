#!/usr/bin/env bash
# Replays a day of decision-log lines (1,000,000 by default) with the release binary:
# once under the config they were "recorded" with (nothing changes) and once under a
# changed rule (run-job needs another scope). Prints wall time, CPU time and peak RSS.
#   bash benches/replay/run.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/../.."
lines="${1:-1000000}"
cargo build --release --locked --bin writ >/dev/null
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
python3 benches/replay/gen_log.py "$lines" > "$work/day.jsonl"
echo "log: $lines lines, $(du -h "$work/day.jsonl" | cut -f1)"
cfg=config/examples/job-runner-sidecar.yaml
sed 's/scopes: \[jobs:execute\]/scopes: [jobs:run]/' "$cfg" > "$work/changed.yaml"
sed -i "s#jwks_file: ../demo/jwks.json#jwks_file: $PWD/config/demo/jwks.json#" "$work/changed.yaml"
for c in "$cfg" "$work/changed.yaml"; do
  /usr/bin/time -f "  wall %es  cpu %Us user + %Ss sys  peak RSS %M KiB" \
    target/release/writ replay --json --config "$c" "$work/day.jsonl" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); r.pop("changes"); print("  " + json.dumps(r))' || true
done
