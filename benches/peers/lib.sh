# lib.sh: what the bench scripts beside the shared harness share (sourced, not run):
# a runtime directory, processes started and tracked by pid, killed by pid on exit.
# Sets RUN; `start NAME PORT ARGV...` runs ARGV in the background (log in $RUN/NAME.log),
# waits until PORT accepts connections and leaves its pid in LAST.
RUN=$(mktemp -d)
STARTED=()
LAST=
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${STARTED[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$RUN"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start() { # name port argv...
  local name=$1 port=$2; shift 2
  "$@" > "$RUN/$name.log" 2>&1 &
  LAST=$!
  STARTED+=("$LAST")
  # Up to 30 s: a binary started under valgrind takes a while to listen.
  for _ in $(seq 300); do
    port_open "$port" && return 0
    kill -0 "$LAST" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not start:" >&2; tail -5 "$RUN/$name.log" >&2; exit 1
}
