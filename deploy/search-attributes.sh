#!/bin/sh
# One-shot job: register the collections search attributes (CONTRACT.md) on the namespace, over
# mTLS when TLS_CA_PATH, TLS_CERT_PATH, TLS_KEY_PATH and TLS_SERVER_NAME are set (the compose file
# sets them; the temporal CLI takes them as flags, whose names are stable across its versions).
set -eu
set -- --namespace "$TEMPORAL_NAMESPACE"
if [ -n "${TLS_CA_PATH:-}" ]; then
  set -- "$@" --tls --tls-ca-path "$TLS_CA_PATH" --tls-cert-path "$TLS_CERT_PATH" \
    --tls-key-path "$TLS_KEY_PATH" --tls-server-name "$TLS_SERVER_NAME"
fi
for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  temporal operator search-attribute create "$@" --name "$name" --type "$type" \
    || temporal operator search-attribute list "$@" | grep -q "^ *$name "
done
echo "search attributes registered"
