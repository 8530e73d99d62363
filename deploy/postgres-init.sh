#!/bin/sh
# Creates the collections application's own database and role beside Temporal's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE collections LOGIN PASSWORD '${COLLECTIONS_DB_PASSWORD}';
CREATE DATABASE collections OWNER collections;
SQL
