#!/bin/sh
# One-shot job: register the collections search attributes (CONTRACT.md) on the namespace.
set -eu
for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" --name "$name" --type "$type" \
    || temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE" | grep -q "^ *$name "
done
echo "search attributes registered"
