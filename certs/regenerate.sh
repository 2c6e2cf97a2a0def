#!/usr/bin/env bash
# Regenerates carehub's TEST certificates: a test CA, a server certificate for the hub on
# localhost/127.0.0.1, and client certificates for two systems. For tests and local trials
# only: the private keys are committed and therefore public.
#
# Usage: certs/regenerate.sh   (needs openssl; writes into this folder)
set -euo pipefail
cd "$(dirname "$0")"
days=36500   # test certificates; far enough away never to expire under a test

ext() { printf '%s\n' "$@" > "$tmp/ext.cnf"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The test CA.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/O=carehub test/CN=carehub test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

# issue NAME SUBJECT_CN SAN EKU
issue() {
    local name=$1 cn=$2 san=$3 eku=$4
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
    openssl req -new -key "$name.key" -subj "/O=carehub test/CN=$cn" -out "$tmp/$name.csr"
    ext "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=$eku" "subjectAltName=$san"
    openssl x509 -req -in "$tmp/$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
        -sha256 -extfile "$tmp/ext.cnf" -out "$name.pem"
}

issue hub "carehub test hub" "DNS:localhost,IP:127.0.0.1" serverAuth
issue combine-ekero "combine-ekero" "DNS:combine-ekero.systems.carehub.test" clientAuth
issue phoniro-ekero "phoniro-ekero" "DNS:phoniro-ekero.systems.carehub.test" clientAuth
rm -f ca.srl
echo "certificates written to $(pwd)"
