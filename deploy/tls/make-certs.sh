#!/bin/sh
# Certificates of the Dask cluster's mutual TLS (deploy/README.md, "Dask TLS"): a private CA and
# one key pair per role, signed by it. The scheduler and the workers accept only peers whose
# certificate this CA signed, so reaching port 8786 is no longer enough to run code on the
# workers or read their environment.
#
#   deploy/tls/make-certs.sh OUT_DIR [SCHEDULER_NAME ...]
#
# SCHEDULER_NAME: host names written into the certificates (default: dask-scheduler, the compose
# service; localhost). Dask itself trusts a peer for its CA's signature, not for its host name. Writes OUT_DIR/ca.pem and OUT_DIR/{scheduler,worker,client}.{pem,key};
# ca.key stays in OUT_DIR to sign more (keep it offline, not on the cluster). Keys are mode 600:
# give them to the user the processes run as (uid 1000 in the image). Needs openssl 1.1.1+.
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: $0 OUT_DIR [SCHEDULER_NAME ...]" >&2
    exit 2
fi
out=$1
shift
[ "$#" -gt 0 ] || set -- dask-scheduler localhost
days=${TLS_DAYS:-825}

umask 077
mkdir -p "$out"
if [ -e "$out/ca.pem" ]; then
    echo "$out/ca.pem exists: not overwriting a CA that certificates may already trust" >&2
    exit 1
fi

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -days "$days" -subj "/CN=terrawatch dask CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null

sans="IP:127.0.0.1"
for name in "$@"; do sans="$sans,DNS:$name"; done

# Every role both serves and connects (workers talk to each other, the scheduler to workers).
for role in scheduler worker client; do
    ext="$out/$role.ext"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$sans" > "$ext"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -subj "/CN=terrawatch-dask-$role" -keyout "$out/$role.key" -out "$out/$role.csr" 2>/dev/null
    openssl x509 -req -in "$out/$role.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -CAcreateserial -days "$days" -extfile "$ext" -out "$out/$role.pem" 2>/dev/null
    rm -f "$out/$role.csr" "$ext"
done
rm -f "$out/ca.srl"
chmod 644 "$out"/*.pem
echo "wrote $out: ca.pem, scheduler/worker/client .pem and .key (ca.key: keep it offline)"
