#!/bin/sh
# The entrypoint of docker-compose.yml's scale-profile replica. On first start (an empty data
# folder) a base backup of the primary over the replication role and its slot: pg_basebackup -R
# writes standby.signal and primary_conninfo, so PostgreSQL then starts as a streaming standby.
# It runs as a hot standby (read-only queries) that tells the primary which rows its queries
# still read (hot_standby_feedback), so cleanup on the primary does not cancel them.
# Arguments are passed on to postgres (compose gives the pg_hba file).
set -eu
: "${GEO_REPLICATION_PASSWORD:?set GEO_REPLICATION_PASSWORD}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then
    # the image starts as root: hand the data folder to postgres, then start again as postgres
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec gosu postgres "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "replica: base backup of ${GEO_PRIMARY_HOST:-db}:${GEO_PRIMARY_PORT:-5432}"
    # on failure pg_basebackup empties the folder again: the next start tries anew
    PGPASSWORD="$GEO_REPLICATION_PASSWORD" pg_basebackup --pgdata="$PGDATA" \
        --host="${GEO_PRIMARY_HOST:-db}" --port="${GEO_PRIMARY_PORT:-5432}" \
        --username=geo_replicator --no-password --slot=geo_replica --write-recovery-conf \
        --wal-method=stream --checkpoint=fast
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on "$@"
