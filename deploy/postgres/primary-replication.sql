-- The primary's side of docker-compose.yml's scale profile, run as the superuser by the one-shot
-- replication-setup service at each start (so it also sets up a db volume made before): the
-- replication role with the current GEO_REPLICATION_PASSWORD, and the replica's physical slot,
-- so the primary keeps the WAL the replica has not received yet, up to max_slot_wal_keep_size
-- (past that the slot is given up rather than the primary's disk filled).
\set ON_ERROR_STOP on
\getenv replication_password GEO_REPLICATION_PASSWORD

DO $$
BEGIN
    IF current_setting('wal_level') = 'minimal' THEN
        RAISE EXCEPTION 'wal_level is minimal: the primary cannot stream to a replica';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'geo_replicator') THEN
        CREATE ROLE geo_replicator WITH LOGIN REPLICATION;
    END IF;
END
$$;
ALTER ROLE geo_replicator WITH LOGIN REPLICATION PASSWORD :'replication_password';
SELECT pg_create_physical_replication_slot('geo_replica')
 WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'geo_replica');
ALTER SYSTEM SET max_slot_wal_keep_size = '4GB';
SELECT pg_reload_conf();
