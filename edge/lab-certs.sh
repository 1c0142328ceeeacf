#!/usr/bin/env bash
# The files a lab needs for TLS and SuperNode authentication (Flower 1.42), made with openssl
# and ssh-keygen:
#   OUT/ca.crt, OUT/ca.key            the lab's CA (keep ca.key off the network)
#   OUT/server.pem, OUT/server.key    the SuperLink's certificate for HOSTS (IPs or DNS names)
#   OUT/nodes/NAME, OUT/nodes/NAME.pub  one P-384 key pair per SuperNode, in OpenSSH form
#
#   edge/lab-certs.sh OUT "192.0.2.10,superlink.lab" node0 node1 node2 node3
#
# Then, on the SuperLink's host:
#   flower-superlink --ssl-ca-certfile OUT/ca.crt --ssl-certfile OUT/server.pem \
#       --ssl-keyfile OUT/server.key --enable-supernode-auth ...
#   flwr supernode register OUT/nodes/node0.pub <connection>   # once per node
# and on each board (ROOT_CERT=ca.crt AUTH_KEY=nodes/node0 in node.env): edge/supernode.sh.
# An existing OUT/ca.key is reused, so nodes and servers can be added later.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: lab-certs.sh OUT HOSTS [NODE...]  (HOSTS: a,b,c)" >&2; exit 2; }
out=$1 hosts=$2
shift 2
mkdir -p "$out/nodes"
days=${DAYS:-365}
if [ ! -f "$out/ca.key" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=coopflower lab CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$out/ca.crt"
fi
san=""
IFS=, read -ra names <<<"$hosts"
for h in "${names[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san="$san,IP:$h"; else san="$san,DNS:$h"; fi
done
openssl ecparam -name prime256v1 -genkey -noout -out "$out/server.key.ec"
openssl pkcs8 -topk8 -nocrypt -in "$out/server.key.ec" -out "$out/server.key"
rm -f "$out/server.key.ec"
openssl req -new -key "$out/server.key" -subj "/CN=${names[0]}" -out "$out/server.csr"
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -sha256 -out "$out/server.pem" -extfile <(printf '%s\n' \
  "subjectAltName=${san#,}" "extendedKeyUsage=serverAuth" "basicConstraints=CA:FALSE")
rm -f "$out/server.csr"
chmod 600 "$out/ca.key" "$out/server.key"
for node in "$@"; do
  [ -f "$out/nodes/$node" ] || ssh-keygen -q -t ecdsa -b 384 -N "" -C "$node" -f "$out/nodes/$node"
done
echo "lab-certs: $out/ca.crt, $out/server.pem for ${san#,}; node keys: ${*:-none}"
