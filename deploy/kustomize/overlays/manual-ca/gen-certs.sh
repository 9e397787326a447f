#!/usr/bin/env bash
# Makes the webhook's certificates with openssl, for clusters without cert-manager:
# a CA (ca.crt, ca.key) and a serving certificate for the webhook Service signed by
# it (tls.crt, tls.key), in this directory or in $1.
#
#   ./gen-certs.sh && kubectl apply -k .
set -euo pipefail
out="${1:-$(dirname "$0")}"
service="${SERVICE:-writ-webhook}"
namespace="${NAMESPACE:-writ-system}"
days="${DAYS:-365}"
cd "$out"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout ca.key -out ca.crt -days "$((days * 5))" -subj "/CN=writ-webhook-ca" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout tls.key -out tls.csr -subj "/CN=$service.$namespace.svc" 2>/dev/null
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days "$days" \
  -extfile <(printf 'subjectAltName=DNS:%s.%s.svc,DNS:%s.%s.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$service" "$namespace" "$service" "$namespace") 2>/dev/null
rm -f tls.csr ca.srl
chmod 644 ca.crt tls.crt
echo "wrote $out/{ca.crt,ca.key,tls.crt,tls.key} for $service.$namespace.svc (keep ca.key out of the cluster)"
