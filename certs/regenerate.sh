#!/usr/bin/env bash
# Regenerates carehub's TEST certificates: a test CA, a server certificate for the hub on
# localhost/127.0.0.1, and client certificates for two systems; and, for the conformance
# cases of refused client certificates, an expired Phoniro certificate from the test CA and
# a foreign CA with a Phoniro certificate of its own. For tests and local trials only: the
# private keys are committed and therefore public.
#
# Usage: certs/regenerate.sh          everything (needs openssl; writes into this folder)
#        certs/regenerate.sh refused  only the expired and the foreign files, from the
#                                     test CA as it stands
set -euo pipefail
cd "$(dirname "$0")"
days=36500   # test certificates; far enough away never to expire under a test

ext() { printf '%s\n' "$@" > "$tmp/ext.cnf"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

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

# refused NAME CA CA_KEY [STARTDATE ENDDATE]: a Phoniro client certificate from CA, with
# fixed dates when given (`openssl x509 -req` in OpenSSL 3.0 only counts days from now, so
# `openssl ca` signs it, from a throwaway database).
refused() {
    local name=$1 ca=$2 cakey=$3 start=${4:-} end=${5:-}
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key"
    openssl req -new -key "$name.key" -subj "/O=carehub test/CN=phoniro-ekero" -out "$tmp/$name.csr"
    rm -rf "$tmp/db" && mkdir -p "$tmp/db" && : > "$tmp/db/index.txt"
    cat > "$tmp/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $tmp/db/index.txt
new_certs_dir = $tmp/db
rand_serial = yes
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
x509_extensions = client
[any]
organizationName = optional
commonName = supplied
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = DNS:phoniro-ekero.systems.carehub.test
EOF
    local dates=(-days "$days")
    if [ -n "$start" ]; then dates=(-startdate "$start" -enddate "$end"); fi
    openssl ca -batch -notext -config "$tmp/ca.cnf" -cert "$ca" -keyfile "$cakey" "${dates[@]}" \
        -in "$tmp/$name.csr" -out "$name.pem"
}

write_refused() {
    # Expired: from the test CA, valid only in the year 2000.
    refused phoniro-ekero-expired ca.pem ca.key 20000101000000Z 20010101000000Z
    # Foreign: a CA the hub does not know, and a certificate from it for the same name.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out foreign-ca.key
    openssl req -x509 -new -key foreign-ca.key -sha256 -days "$days" \
        -subj "/O=somewhere else/CN=foreign test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out foreign-ca.pem
    refused phoniro-ekero-foreign foreign-ca.pem foreign-ca.key
}

if [ "${1:-}" = refused ]; then
    write_refused
    echo "expired and foreign certificates written to $(pwd)"
    exit 0
fi

# The test CA.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/O=carehub test/CN=carehub test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

issue hub "carehub test hub" "DNS:localhost,IP:127.0.0.1" serverAuth
issue combine-ekero "combine-ekero" "DNS:combine-ekero.systems.carehub.test" clientAuth
issue phoniro-ekero "phoniro-ekero" "DNS:phoniro-ekero.systems.carehub.test" clientAuth
rm -f ca.srl
write_refused
echo "certificates written to $(pwd)"
