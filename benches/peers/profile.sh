#!/usr/bin/env bash
# profile.sh: where writ's CPU goes on the peer benchmark's request, next to plain nginx.
# Beside the shared harness (../shared/bench/peers, read-only): its keys, its writ config and
# nginx configs, the same request (POST /v1/jobs/42/run, valid ES256 token, 32 connections).
#
#   bash benches/peers/profile.sh syscalls [BIN]     strace -c -f on writ, then on nginx-plain,
#                                                    for the same wrk run: syscalls per request
#   bash benches/peers/profile.sh perf [BIN]         perf record (cpu-clock, call graphs) on writ
#                                                    under load: top symbols, self and children
#   bash benches/peers/profile.sh callgrind [BIN]    valgrind --tool=callgrind on writ under a
#                                                    bounded load: instructions per request, top
#                                                    functions (inclusive and self)
#   bash benches/peers/profile.sh ab BIN_A BIN_B [ROUNDS]
#                                                    interleaved A/B (A B A B ...): req/s and CPU
#                                                    µs/req of each binary on the same request
#   bash benches/peers/profile.sh abcg BIN_A BIN_B   the same A/B counted by callgrind
#                                                    (instructions per request; stable on a
#                                                    shared machine)
#   bash benches/peers/profile.sh rss [BIN...]       resident memory of each binary: smaps_rollup
#                                                    at idle, then 2 s warm-up + DURATION of load
#                                                    (as the peer run's round): VmHWM (the peer
#                                                    run's "peak RSS") and the smaps split after it
#
# Knobs: CG_ARGS (extra callgrind options for abcg, e.g. --cache-sim=yes) DURATION=8s CONNS=32 CONFIG=<writ config with the shared harness's placeholders>
#        TOKEN_NAME=valid (a token of the shared keys/, or none)
#        OUT=<dir for raw output> (default target/profile/<mode>-<stamp>)
# BIN defaults to target/release/writ. Everything it starts is killed by pid on exit; traffic
# goes to 127.0.0.1 only and every load run is bounded by wrk -d and `timeout`.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
[ -d "$PEERS" ] || PEERS=/work/shared/bench/peers
MODE=${1:?usage: profile.sh syscalls|perf|callgrind|ab|abcg|rss [BIN...]}
shift
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
CONFIG=${CONFIG:-$PEERS/conf/writ.yaml}
BASE=${BASE_PORT:-19400}
BACKEND=$BASE NGINX=$((BASE + 1)) WRIT=$((BASE + 2)) WRIT_ADMIN=$((BASE + 3))
OUT=${OUT:-$ROOT/target/profile/$MODE-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
# shellcheck source=benches/peers/lib.sh
source "$ROOT/benches/peers/lib.sh"
# TOKEN_NAME: the shared keys' token to send (valid, noexec, ...; none: no Authorization).
TOKEN_NAME=${TOKEN_NAME:-valid}
TOKEN=
[ "$TOKEN_NAME" = none ] || TOKEN=$(tr -d '\n' < "$PEERS/keys/$TOKEN_NAME.jwt")
HZ=$(getconf CLK_TCK)
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
render() { # file port -> stdout
  sed -e "s|@PORT@|$2|g" -e "s|@ADMIN_PORT@|$WRIT_ADMIN|g" -e "s|@BACKEND_PORT@|$BACKEND|g" \
      -e "s|@RUN@|$RUN|g" -e "s|@PEERS@|$PEERS|g" "$1"
}
load() { # port seconds label -> prints RESULT line, saved to $OUT/label.txt
  WRK_TOKEN=$TOKEN timeout 120 wrk -t1 -c"$CONNS" -d"$2" --latency -s "$PEERS/lua/bench.lua" \
    "http://127.0.0.1:$1/v1/jobs/42/run" > "$OUT/$3.txt" 2>&1
  grep '^RESULT' "$OUT/$3.txt" | tail -1
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }

mkdir -p "$RUN/backend" "$RUN/nginx-plain"
render "$PEERS/conf/backend.conf" "$BACKEND" > "$RUN/backend.conf"
render "$PEERS/conf/nginx-plain.conf" "$NGINX" | sed "s|:19000|:$BACKEND|" > "$RUN/nginx-plain.conf"
render "$CONFIG" "$WRIT" > "$RUN/writ.yaml"
start backend "$BACKEND" nginx -e stderr -p "$RUN/backend/" -c "$RUN/backend.conf"

start_writ() { # bin [wrapper argv...]
  local bin=$1; shift
  start writ "$WRIT" "$@" "$bin" run --config "$RUN/writ.yaml"
}
nginx_worker() { ps -o pid= --ppid "$1" | tr -d ' ' | head -1; }

case $MODE in
syscalls)
  BIN=${1:-$ROOT/target/release/writ}
  start_writ "$BIN"; W=$LAST
  load "$WRIT" 2s warm >/dev/null
  strace -c -f -q -o "$OUT/strace-writ.txt" -p "$W" & S=$!
  sleep 1
  r=$(load "$WRIT" "$DURATION" writ); kill -INT "$S"; wait "$S" 2>/dev/null
  n=$(field "$r" requests)
  echo "writ: $r" | tee "$OUT/summary.txt"
  awk -v n="$n" '/^ *[0-9]/ && $NF!="total" {c=($4 ~ /^[0-9]+$/)?$4:$4; printf "  %-16s %8.3f /req\n", $NF, $4/n} /total$/{printf "  %-16s %8.3f /req\n", "TOTAL", $4/n}' \
    "$OUT/strace-writ.txt" | tee -a "$OUT/summary.txt"
  stop "$W"
  start nginx-plain "$NGINX" nginx -e stderr -p "$RUN/nginx-plain/" -c "$RUN/nginx-plain.conf"; N=$LAST
  sleep 0.2; NW=$(nginx_worker "$N")
  load "$NGINX" 2s warm-nginx >/dev/null
  strace -c -f -q -o "$OUT/strace-nginx.txt" -p "$NW" & S=$!
  sleep 1
  r=$(load "$NGINX" "$DURATION" nginx); kill -INT "$S"; wait "$S" 2>/dev/null
  n=$(field "$r" requests)
  echo "nginx-plain: $r" | tee -a "$OUT/summary.txt"
  awk -v n="$n" '/^ *[0-9]/ && $NF!="total" {printf "  %-16s %8.3f /req\n", $NF, $4/n} /total$/{printf "  %-16s %8.3f /req\n", "TOTAL", $4/n}' \
    "$OUT/strace-nginx.txt" | tee -a "$OUT/summary.txt"
  ;;
perf)
  # `perf nginx` profiles the nginx-plain worker on the same request instead.
  BIN=${1:-$ROOT/target/release/writ}
  if [ "$BIN" = nginx ]; then
    start nginx-plain "$NGINX" nginx -e stderr -p "$RUN/nginx-plain/" -c "$RUN/nginx-plain.conf"
    sleep 0.2; W=$(nginx_worker "$LAST"); PORT=$NGINX
  else
    start_writ "$BIN"; W=$LAST; PORT=$WRIT
  fi
  load "$PORT" 2s warm >/dev/null
  perf record -e cpu-clock -F 2999 -g -o "$OUT/perf.data" -p "$W" 2> "$OUT/perf-record.log" & P=$!
  sleep 0.5
  r=$(load "$PORT" "$DURATION" profiled); kill -INT "$P"; wait "$P" 2>/dev/null
  echo "$BIN: $r" | tee "$OUT/summary.txt"
  perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12 | tee -a "$OUT/summary.txt"
  perf report -i "$OUT/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -40 | tee -a "$OUT/summary.txt"
  perf report -i "$OUT/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -60 > "$OUT/children.txt"
  ;;
callgrind)
  # `callgrind nginx` counts nginx-plain (one process: master_process off) on the same request.
  BIN=${1:-$ROOT/target/release/writ}
  cg=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" --dump-instr=no)
  if [ "$BIN" = nginx ]; then
    sed 's/^worker_processes 1;/worker_processes 1; master_process off;/' "$RUN/nginx-plain.conf" > "$RUN/nginx-cg.conf"
    start nginx-plain "$NGINX" "${cg[@]}" nginx -e stderr -p "$RUN/nginx-plain/" -c "$RUN/nginx-cg.conf"
    W=$LAST; PORT=$NGINX
  else
    start_writ "$BIN" "${cg[@]}"; W=$LAST; PORT=$WRIT
  fi
  load "$PORT" 6s warm >/dev/null
  # Counting starts after the warm-up (first requests open upstream connections, fill the cache).
  callgrind_control -z "$W" >/dev/null
  r=$(load "$PORT" "${CG_DURATION:-10s}" profiled)
  callgrind_control -d "$W" >/dev/null
  sleep 1; stop "$W"
  n=$(field "$r" requests)
  # The dump taken right after the measured run is the large one (the file written at exit
  # holds only the shutdown).
  f=$(ls -S "$OUT"/callgrind.out* | head -1)
  total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
  { echo "$BIN under callgrind: $r"
    echo "instructions: $total total, $((total / n)) per request ($n requests)"
    echo "--- inclusive"
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -60
    echo "--- self"
    callgrind_annotate "$f" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -40
  } > "$OUT/summary.txt"
  head -3 "$OUT/summary.txt"
  ;;
ab|abcg)
  A=${1:?BIN_A}; B=${2:?BIN_B}; ROUNDS=${3:-3}
  [ "$MODE" = abcg ] && ROUNDS=1
  for round in $(seq "$ROUNDS"); do
    for side in A B; do
      bin=$A; [ $side = B ] && bin=$B
      if [ "$MODE" = abcg ]; then
        start_writ "$bin" valgrind --tool=callgrind ${CG_ARGS:-} --callgrind-out-file="$OUT/cg-$side.out" --dump-instr=no; W=$LAST
        load "$WRIT" 6s warm >/dev/null
        callgrind_control -z "$W" >/dev/null
        r=$(load "$WRIT" "${CG_DURATION:-10s}" "$side-r$round")
        callgrind_control -d "$W" >/dev/null; sleep 1; stop "$W"
        f=$(ls -S "$OUT"/cg-$side.out* | head -1)
        total=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
        n=$(field "$r" requests)
        echo "$side: $((total / n)) instructions/req ($n requests) $bin" | tee -a "$OUT/summary.txt"
      else
        start_writ "$bin"; W=$LAST
        load "$WRIT" 2s warm >/dev/null
        t0=$(ticks "$W"); r=$(load "$WRIT" "$DURATION" "$side-r$round"); t1=$(ticks "$W")
        n=$(field "$r" requests)
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN{printf "%.1f", t/hz*1e6/n}')
        echo "r$round $side: rps=$(field "$r" rps) p99_us=$(field "$r" p99_us) cpu_us_req=$cpu load=$(cut -d' ' -f1 /proc/loadavg) $bin" \
          | tee -a "$OUT/summary.txt"
        stop "$W"
      fi
    done
  done
  ;;
rss)
  # The split that says where the pages are: file-backed (the binary's code and data, mapped on
  # touch) against anonymous (heap, thread stacks). Pss would hide nothing here (no sharing).
  split() { awk '/^Rss:/{r=$2} /^Anonymous:/{a=$2} END{printf "rss=%d anon=%d file=%d", r, a, r-a}' "/proc/$1/smaps_rollup"; }
  [ $# -gt 0 ] || set -- "$ROOT/target/release/writ"
  for bin in "$@"; do
    start_writ "$bin"; W=$LAST
    sleep 0.5
    idle=$(split "$W")
    load "$WRIT" 2s warm >/dev/null
    r=$(load "$WRIT" "$DURATION" rss)
    hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$W/status")
    busy=$(split "$W")
    threads=$(ls "/proc/$W/task" | wc -l)
    echo "hwm_kb=$hwm after: $busy idle: $idle threads=$threads rps=$(field "$r" rps) $bin" | tee -a "$OUT/summary.txt"
    cp "/proc/$W/smaps" "$OUT/smaps-$(basename "$bin")-$$-$RANDOM.txt" 2>/dev/null
    stop "$W"
  done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
echo "raw output: $OUT" >&2
