#!/usr/bin/env bash
# Throw-away development PKI for kgate's TLS tests. NEVER use any of this in
# production: the keys are unprotected (bar one test key), short-lived and
# generated on whatever machine runs this script.
#
#   certs-dev/gen.sh [OUTDIR]                      # the whole set (default certs-dev/out)
#   certs-dev/gen.sh --issue OUTDIR NAME client CN # one more client cert from OUTDIR's CA
#   certs-dev/gen.sh --issue OUTDIR NAME server DNS-or-IP...
#
# Needs only bash and openssl (1.1.1 or 3.x). When the JDK's keytool is on the
# PATH it also writes PKCS#12 truststores for Java (OpenSSL before 3.2 cannot
# mark a certificate as trusted for Java); without it Java can read ca.pem
# directly (ssl.truststore.type=PEM). See certs-dev/README.md.
# Prints one summary line; on error, the failing openssl command's output.
set -euo pipefail
umask 077

DAYS=${KGATE_DEV_PKI_DAYS:-30}
P12_PASS=changeit

err() { printf 'gen.sh: %s\n' "$*" >&2; exit 1; }
command -v openssl >/dev/null || err "openssl not found"

# Runs openssl quietly; on failure shows its output.
ossl() {
    local out rc=0
    out=$(openssl "$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'gen.sh: openssl %s failed (exit %s):\n%s\n' "$*" "$rc" "$out" >&2
        exit "$rc"
    fi
}

# A random, positive 128-bit serial.
serial() { printf '0x%s' "$(openssl rand -hex 16)"; }

rsa_key() { ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; } # PKCS#8
ec_key() { ossl ecparam -name "$2" -genkey -noout -out "$1"; }                        # SEC1

# ca NAME CN: a self-signed CA.
make_ca() {
    local name=$1 cn=$2 ext
    ext=$(mktemp)
    cat >"$ext" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
    rsa_key "$OUT/$name.key"
    ossl req -new -x509 -config "$ext" -extensions v3_ca -key "$OUT/$name.key" -subj "/O=kgate dev/CN=$cn" \
        -days $((DAYS * 3)) -set_serial "$(serial)" -sha256 -out "$OUT/$name.pem"
    rm -f "$ext"
}

# extfile KIND SAN...: prints an x509 extension file for a client or server leaf.
extfile() {
    local kind=$1 f san="" s
    shift
    f=$(mktemp)
    for s in "$@"; do
        if [[ $s =~ ^[0-9.]+$ || $s == *:* ]]; then san+="${san:+, }IP:$s"; else san+="${san:+, }DNS:$s"; fi
    done
    {
        echo "basicConstraints = critical, CA:false"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid, issuer"
        if [ "$kind" = server ]; then
            echo "keyUsage = critical, digitalSignature, keyEncipherment"
            echo "extendedKeyUsage = serverAuth"
        else
            echo "keyUsage = critical, digitalSignature, keyEncipherment"
            echo "extendedKeyUsage = clientAuth"
        fi
        [ -z "$san" ] || echo "subjectAltName = $san"
    } >"$f"
    echo "$f"
}

# leaf CA NAME KIND CN SAN...: NAME.pem signed by CA.pem/CA.key; NAME.key must exist.
leaf() {
    local ca=$1 name=$2 kind=$3 cn=$4 ext csr
    shift 4
    ext=$(extfile "$kind" "$@")
    csr=$(mktemp)
    ossl req -new -key "$OUT/$name.key" -subj "/O=kgate dev/CN=$cn" -out "$csr"
    ossl x509 -req -in "$csr" -CA "$OUT/$ca.pem" -CAkey "$OUT/$ca.key" -set_serial "$(serial)" \
        -days "$DAYS" -sha256 -extfile "$ext" -out "$OUT/$name.pem"
    rm -f "$ext" "$csr"
}

# expired CA NAME CN: a client cert valid from 400 to 370 days ago. `openssl
# x509` cannot back-date before OpenSSL 3.4, `openssl ca -startdate/-enddate` can.
expired_leaf() {
    local ca=$1 name=$2 cn=$3 dir csr start end
    dir=$(mktemp -d)
    csr=$dir/req.csr
    : >"$dir/index.txt"
    openssl rand -hex 16 >"$dir/serial" # `openssl ca` wants the file even with -rand_serial
    start=$(date -u -d '400 days ago' +%Y%m%d%H%M%SZ)
    end=$(date -u -d '370 days ago' +%Y%m%d%H%M%SZ)
    cat >"$dir/ca.cnf" <<EOF
[ca]
default_ca = dev
[dev]
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir
certificate = $OUT/$ca.pem
private_key = $OUT/$ca.key
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
x509_extensions = leaf
[any]
organizationName = optional
commonName = supplied
[leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    ossl req -new -key "$OUT/$name.key" -subj "/O=kgate dev/CN=$cn" -out "$csr"
    ossl ca -batch -notext -config "$dir/ca.cnf" -rand_serial -startdate "$start" -enddate "$end" \
        -in "$csr" -out "$OUT/$name.pem"
    rm -rf "$dir"
}

# p12 NAME: NAME.p12 (key + cert + CA chain), password changeit.
p12() {
    ossl pkcs12 -export -in "$OUT/$1.pem" -inkey "$OUT/$1.key" -certfile "$OUT/ca.pem" -name "$1" \
        -out "$OUT/$1.p12" -passout "pass:$P12_PASS"
}

# truststore NAME CA.pem: a PKCS#12 truststore Java accepts (trusted-cert
# entries need keytool with OpenSSL < 3.2; skipped without keytool).
truststore() {
    local out=$OUT/$1.p12
    command -v keytool >/dev/null || return 0
    rm -f "$out"
    keytool -importcert -noprompt -storetype PKCS12 -keystore "$out" -storepass "$P12_PASS" \
        -alias "${2%.pem}" -file "$OUT/$2" >/dev/null 2>&1 || err "keytool could not write $out"
}

if [ "${1:-}" = "--issue" ]; then
    [ $# -ge 5 ] || err "usage: gen.sh --issue OUTDIR NAME client|server CN-or-SAN..."
    OUT=$2 name=$3 kind=$4
    shift 4
    [ -f "$OUT/ca.pem" ] && [ -f "$OUT/ca.key" ] || err "$OUT has no ca.pem/ca.key: run gen.sh $OUT first"
    rsa_key "$OUT/$name.key"
    case $kind in
    client) leaf ca "$name" client "$1" ;;
    server) leaf ca "$name" server "$1" "$@" ;;
    *) err "kind must be client or server, not $kind" ;;
    esac
    printf 'gen.sh: issued %s/%s.pem (%s, serial %s)\n' "$OUT" "$name" "$kind" \
        "$(openssl x509 -in "$OUT/$name.pem" -noout -serial | cut -d= -f2)"
    exit 0
fi

OUT=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# --- the dev CA and the rogue CA ---------------------------------------------
make_ca ca "kgate dev CA"
make_ca rogue-ca "kgate ROGUE CA"

# --- upstream: the broker (stunnel in front of tansu) and kgate as its client
rsa_key "$OUT/broker.key"
leaf ca broker server localhost localhost 127.0.0.1
rsa_key "$OUT/wrongname-broker.key"
leaf ca wrongname-broker server wrong.example wrong.example
rsa_key "$OUT/rogue-broker.key"
leaf rogue-ca rogue-broker server localhost localhost 127.0.0.1

rsa_key "$OUT/kgate-client.key" # PKCS#8
leaf ca kgate-client client kgate
ossl pkey -in "$OUT/kgate-client.key" -traditional -out "$OUT/kgate-client.rsa.key" # PKCS#1
ec_key "$OUT/kgate-client-ec.key" prime256v1                                         # SEC1
leaf ca kgate-client-ec client kgate-ec
ec_key "$OUT/kgate-client-ec384.key" secp384r1
leaf ca kgate-client-ec384 client kgate-ec384

# --- downstream: kgate's own server cert, and the clients that reach it -----
rsa_key "$OUT/kgate-server.key"
leaf ca kgate-server server localhost localhost 127.0.0.1
rsa_key "$OUT/app-client.key"
leaf ca app-client client app-client
rsa_key "$OUT/other-client.key"
leaf ca other-client client other

# ClickHouse-style: an encrypted PKCS#8 key (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC).
openssl rand -hex 12 >"$OUT/client-enc.pass"
rsa_key "$OUT/client-enc.key"
leaf ca client-enc client clickhouse
ossl pkcs8 -topk8 -in "$OUT/client-enc.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 10000 \
    -passout "file:$OUT/client-enc.pass" -out "$OUT/client-enc.key.enc"
mv -f "$OUT/client-enc.key.enc" "$OUT/client-enc.key"

# --- failures -----------------------------------------------------------------
rsa_key "$OUT/rogue-client.key"
leaf rogue-ca rogue-client client app-client # right name, wrong CA
rsa_key "$OUT/expired-client.key"
expired_leaf ca expired-client kgate

# --- Java ---------------------------------------------------------------------
for n in app-client other-client rogue-client kgate-client; do p12 "$n"; done
truststore truststore ca.pem
truststore rogue-truststore rogue-ca.pem

# Certificates are public; keys stay 0600.
chmod 644 "$OUT"/*.pem
n_certs=$(ls "$OUT"/*.pem | wc -l)
printf 'gen.sh: dev PKI in %s: %s certificates (CA "kgate dev CA", valid %s days), FOR TESTS ONLY\n' \
    "$OUT" "$n_certs" "$DAYS"
