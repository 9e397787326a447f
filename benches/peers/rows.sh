#!/usr/bin/env bash
# rows.sh: the scaling rows of issue 18 beside the shared peer harness (../shared/bench/peers,
# read-only), each measured against its own baseline in the same round, rounds interleaved
# (every row once per round, in order). The peer harness's rows are untouched: this script
# adds rows, it changes none.
#
#   bash benches/peers/rows.sh            (from the project root, after cargo build --release)
#
# Rows (all POST /v1/jobs/42/run through writ, 32 keep-alive connections, one wrk thread,
# the shared harness's ES256 keys and writ config, one worker unless said):
#   base          the shared harness's writ row: 2 actions, one repeated valid token, log off
#   actions-10k   the same policy plus 10,000 more actions (other paths)        ratio to base
#   tokens-10k    10,000 distinct valid tokens in rotation (after a warm-up
#                 that verified each once: what a warm cache costs)           ratio to base
#   log-file      decision_log to a file                                       ratio to base
#   deny-401      no token: 401 answered by writ, connection kept alive        ratio to base
#   deny-403      a valid token without jobs:execute: 403, kept alive          ratio to base
#   workers-2     workers: 2 (two worker threads, a runtime each, on the 2 cores) ratio to base
#
# Columns: req/s, p99, writ's CPU µs/request and cores busy (utime+stime of writ over the run),
# wrk's own CPU in cores (its utime+stime over the run) and the backend's, and the machine's
# other CPU %. On 2 cores wrk and the backend compete with writ: see docs/performance.md.
#
# Knobs: DURATION=8s CONNS=32 ROUNDS=3 WRIT_BIN=target/release/writ ROWS="base actions-10k ..."
# Everything it starts is killed by pid on exit; traffic goes to 127.0.0.1 only; every load
# run is bounded by wrk -d and `timeout`.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
[ -d "$PEERS" ] || PEERS=/work/shared/bench/peers
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
WRIT_BIN=${WRIT_BIN:-$ROOT/target/release/writ}
ROWS=${ROWS:-base actions-10k tokens-10k log-file deny-401 deny-403 workers-2}
BASE=${BASE_PORT:-19500}
BACKEND=$BASE
OUT=${OUT:-$ROOT/target/profile/rows-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
for b in wrk nginx python3 "$WRIT_BIN"; do
  command -v "$b" >/dev/null || { echo "missing $b" >&2; exit 1; }
done
# shellcheck source=benches/peers/lib.sh
source "$ROOT/benches/peers/lib.sh"
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- inputs
python3 - "$PEERS/keys/es256-private.pem" "$RUN" <<'PY'
import sys, time, jwt
key = open(sys.argv[1]).read()
run = sys.argv[2]
now = int(time.time())
# 10,000 distinct valid tokens (distinct sub and jti), the claims of keys/valid.jwt otherwise.
with open(f"{run}/tokens.txt", "w") as f:
    for i in range(10_000):
        claims = {"iss": "https://issuer.test", "aud": "orders-api", "sub": f"bench-user-{i}",
                  "jti": f"bench-{i}", "iat": now, "nbf": now - 60, "exp": 4102444800,
                  "scope": "jobs:read jobs:execute"}
        f.write(jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench-es256-1"}) + "\n")
# 10,000 more actions on paths the benchmark request does not take.
with open(f"{run}/actions.yaml", "w") as f:
    for i in range(10_000):
        f.write(f"  - name: extra-{i}\n    methods: [GET, POST]\n"
                f"    path: /v2/svc{i}/items/{{id}}\n    require:\n      scopes: [svc{i}:use]\n")
PY
cat > "$RUN/rotate.lua" <<'EOF'
-- POST with the next of 10,000 tokens (tokens.txt), round robin; RESULT line as bench.lua.
wrk.method = "POST"
local tokens = {}
for line in io.lines(os.getenv("WRK_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
EOF
sed -n '/^function done/,$p' "$PEERS/lua/bench.lua" >> "$RUN/rotate.lua"

render() { # port extra-settings -> writ config on stdout
  sed -e "s|@PORT@|$1|g" -e "s|@ADMIN_PORT@|$(($1 + 100))|g" -e "s|@BACKEND_PORT@|$BACKEND|g" \
      -e "s|@PEERS@|$PEERS|g" "$PEERS/conf/writ.yaml"
}
mkdir -p "$RUN/backend"
sed -e "s|@BACKEND_PORT@|$BACKEND|g" -e "s|@PORT@|$BACKEND|g" -e "s|@RUN@|$RUN|g" \
  "$PEERS/conf/backend.conf" > "$RUN/backend.conf"
start backend "$BACKEND" nginx -e stderr -p "$RUN/backend/" -c "$RUN/backend.conf"
BACKEND_PID=$LAST

declare -A PORT=() PID=() TOKENS=() SCRIPT=() BASEOF=()
port=$((BASE + 1))
instance() { # name config-file
  start "$1" "$port" "$WRIT_BIN" run --config "$2"
  PORT[$1]=$port; PID[$1]=$LAST; port=$((port + 1))
}
# One writ per distinct config; rows that differ only in their load share an instance.
render "$port" > "$RUN/base.yaml"; instance w-base "$RUN/base.yaml"
{ render "$port"; cat "$RUN/actions.yaml"; } > "$RUN/actions.yaml.full"
instance w-actions "$RUN/actions.yaml.full"
render "$port" | sed "s|^decision_log: .*|decision_log: $RUN/decisions.jsonl|" > "$RUN/log.yaml"
instance w-log "$RUN/log.yaml"
render "$port" | sed "s|^workers: 1|workers: 2|" > "$RUN/workers2.yaml"
instance w-workers2 "$RUN/workers2.yaml"

VALID=$(tr -d '\n' < "$PEERS/keys/valid.jwt")
NOEXEC=$(tr -d '\n' < "$PEERS/keys/noexec.jwt")
row_instance() { case $1 in actions-10k) echo w-actions ;; log-file) echo w-log ;; workers-2) echo w-workers2 ;; *) echo w-base ;; esac; }
row_token() { case $1 in deny-401) echo "" ;; deny-403) echo "$NOEXEC" ;; *) echo "$VALID" ;; esac; }
row_script() { [ "$1" = tokens-10k ] && echo "$RUN/rotate.lua" || echo "$PEERS/lua/bench.lua"; }

# Every row's answer is checked once: what it measures must be what it claims.
for row in $ROWS; do
  p=${PORT[$(row_instance "$row")]}; t=$(row_token "$row")
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST ${t:+-H "Authorization: Bearer $t"} \
    "http://127.0.0.1:$p/v1/jobs/42/run")
  want=200; [ "$row" = deny-401 ] && want=401; [ "$row" = deny-403 ] && want=403
  [ "$code" = "$want" ] || { echo "row $row answered $code, expected $want" >&2; exit 1; }
done
t=$(tail -1 "$RUN/tokens.txt")
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $t" "http://127.0.0.1:${PORT[w-base]}/v1/jobs/42/run")
[ "$code" = 200 ] || { echo "a rotated token answered $code, expected 200" >&2; exit 1; }

ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12+$13}'; }
tree_ticks() { local t=0 p; for p in "$1" $(ps -o pid= --ppid "$1" | tr -d ' '); do t=$((t + $(ticks "$p"))); done; echo $t; }
machine() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
load() { # row seconds outfile
  local p=${PORT[$(row_instance "$1")]}
  WRK_TOKEN=$(row_token "$1") WRK_TOKENS=$RUN/tokens.txt timeout 120 wrk -t1 -c"$CONNS" -d"$2" --latency \
    -s "$(row_script "$1")" "http://127.0.0.1:$p/v1/jobs/42/run" > "$3" 2>&1
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# Warm-up: every row once; tokens-10k's goes through all 10,000 tokens (each verified once).
for row in $ROWS; do load "$row" 3s "$OUT/warm-$row.txt"; done
[[ " $ROWS " == *" tokens-10k "* ]] && load tokens-10k 5s "$OUT/warm2-tokens-10k.txt"

TSV=$OUT/rows.tsv
printf 'round\trow\trps\tp99_us\tnon2xx\tsockerr\twrit_cpu_us_req\twrit_cores\twrk_cores\tbackend_cores\tother_pct\tload1\n' > "$TSV"
for round in $(seq "$ROUNDS"); do
  for row in $ROWS; do
    pid=${PID[$(row_instance "$row")]}
    w0=$(tree_ticks "$pid"); b0=$(tree_ticks "$BACKEND_PID"); read -r m0 t0 < <(machine)
    TIMEFORMAT='%U %S'
    { time load "$row" "$DURATION" "$OUT/r$round-$row.txt"; } 2> "$OUT/r$round-$row.time"
    w1=$(tree_ticks "$pid"); b1=$(tree_ticks "$BACKEND_PID"); read -r m1 t1 < <(machine)
    r=$(grep '^RESULT' "$OUT/r$round-$row.txt" | tail -1)
    [ -n "$r" ] || { echo "no result for $row (see $OUT/r$round-$row.txt)" >&2; continue; }
    secs=$(( $(field "$r" duration_us) ))
    read -r line < <(awk -v r="$(field "$r" requests)" -v d="$secs" -v w=$((w1 - w0)) -v b=$((b1 - b0)) \
      -v hz="$HZ" -v m=$((m1 - m0)) -v t=$((t1 - t0)) -v n="$(nproc)" -v wrk="$(cat "$OUT/r$round-$row.time")" \
      'BEGIN{ split(wrk, x, " "); wk = (x[1] + x[2]); s = d / 1e6;
              other = (m - w - b - wk * hz) / t * 100; if (other < 0) other = 0;
              printf "%.1f %.2f %.2f %.2f %.0f", w / hz * 1e6 / r, w / hz / s, wk / s, b / hz / s, other }')
    read -r cpu wcores wkcores bcores other <<< "$line"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$(field "$r" rps)" \
      "$(field "$r" p99_us)" "$(field "$r" non2xx)" "$(field "$r" sockerr)" "$cpu" "$wcores" "$wkcores" \
      "$bcores" "$other" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$TSV"
  done
done

# Ratios per round against `base` of the same round, then the median over rounds.
python3 - "$TSV" <<'PY' | tee "$OUT/table.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
base = {r["round"]: r for r in rows if r["row"] == "base"}
order = []
for r in rows:
    if r["row"] not in order: order.append(r["row"])
print("| row | req/s by round | req/s ÷ base (median) | p99 µs by round | writ CPU µs/req by round | CPU/req ÷ base | writ cores | wrk cores | backend cores | other CPU % (max) | non-2xx |")
print("|---|---|--:|---|---|--:|--:|--:|--:|--:|--:|")
for name in order:
    rs = [r for r in rows if r["row"] == name]
    rr = [float(r["rps"]) / float(base[r["round"]]["rps"]) for r in rs if r["round"] in base]
    cr = [float(r["writ_cpu_us_req"]) / float(base[r["round"]]["writ_cpu_us_req"]) for r in rs if r["round"] in base]
    j = lambda k, f="{:.0f}": " / ".join(f.format(float(r[k])) for r in rs)
    print(f"| {name} | {j('rps')} | {statistics.median(rr):.2f} | {j('p99_us')} | {j('writ_cpu_us_req', '{:.1f}')} | "
          f"{statistics.median(cr):.2f} | {j('writ_cores', '{:.2f}')} | {j('wrk_cores', '{:.2f}')} | {j('backend_cores', '{:.2f}')} | "
          f"{max(float(r['other_pct']) for r in rs):.0f} | {sum(int(r['non2xx']) for r in rs)} |")
PY
echo "raw output: $OUT" >&2
