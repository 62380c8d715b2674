-- Log storage that stays cheap at 10,000 events/s (issue 15, item 4).
--
-- pgpush.events is partitioned by created_at, one partition per hour,
-- created a day ahead by the sequencer's instance, with a default
-- partition so that a write never fails when no instance ran to create
-- one. Retention drops whole partitions instead of deleting rows.
--
-- Writers now maintain one index, (xid, id). What the other indexes did
-- moves to the sequencer, which writes one pgpush.commits row per
-- transaction anyway: the transaction's id range (resume ids are found
-- through it), the time range of its events (so a read by xid touches
-- only the partitions that hold them) and its channels (replays and the
-- list of known channels read those, not the events).
--
-- Dropping a partition may take the events of a transaction numbered
-- after events that stay (a long transaction), so resuming from those
-- would be a partial replay: pgpush.sequencer.horizon is the highest
-- number whose events may be gone, and a resume id at or below it means
-- resync. pgpush.event_hours keeps, per hour in which transactions began
-- writing, the highest number given to one of them, which is the horizon
-- once that hour's partition is dropped.
--
-- Lock keys: 7370707573680007 one maintain_log() at a time.

-- +goose Up
LOCK TABLE pgpush.events IN ACCESS EXCLUSIVE MODE;

-- What the sequencer now records per transaction, filled in for the
-- commits already numbered.
ALTER TABLE pgpush.commits
    ADD COLUMN first_id bigint,
    ADD COLUMN last_id  bigint,
    ADD COLUMN first_at timestamptz,
    ADD COLUMN last_at  timestamptz,
    ADD COLUMN channels text[];
UPDATE pgpush.commits c
SET first_id = e.first_id, last_id = e.last_id, first_at = e.first_at, last_at = e.last_at, channels = e.channels
FROM (SELECT xid, min(id) AS first_id, max(id) AS last_id, min(created_at) AS first_at,
             max(created_at) AS last_at, array_agg(DISTINCT channel) AS channels
      FROM pgpush.events GROUP BY xid) e
WHERE e.xid = c.xid;
CREATE INDEX commits_ids_idx ON pgpush.commits USING gist (int8range(first_id, last_id, '[]'))
    WHERE first_id IS NOT NULL;

CREATE TABLE pgpush.channels (
    channel  text PRIMARY KEY,
    last_seq bigint -- NULL: published, not numbered yet
);
INSERT INTO pgpush.channels (channel, last_seq)
SELECT ch, max(seq) FROM pgpush.commits, unnest(channels) ch GROUP BY ch;

CREATE TABLE pgpush.event_hours (
    hour    timestamptz PRIMARY KEY,
    max_seq bigint NOT NULL
);
INSERT INTO pgpush.event_hours (hour, max_seq)
SELECT date_trunc('hour', first_at), max(seq) FROM pgpush.commits WHERE first_at IS NOT NULL GROUP BY 1;

ALTER TABLE pgpush.sequencer ADD COLUMN horizon bigint NOT NULL DEFAULT 0;

-- The old table becomes the first partition, from the hour of its first
-- event to the end of this one (or goes, if empty).
DROP TRIGGER events_doorbell ON pgpush.events;
ALTER TABLE pgpush.events DROP CONSTRAINT events_pkey;
DROP INDEX pgpush.events_channel_idx;
DROP INDEX pgpush.events_created_at_idx;
ALTER INDEX pgpush.events_xid_id_idx RENAME TO events_legacy_xid_id_idx;
ALTER TABLE pgpush.events RENAME TO events_legacy;
CREATE TABLE pgpush.events (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel       text NOT NULL,
    event         text NOT NULL,
    data          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    first_in_xact boolean NOT NULL DEFAULT false,
    origin        text
) PARTITION BY RANGE (created_at);
-- +goose StatementBegin
DO $$
DECLARE
    next_id bigint := greatest(
        (SELECT max(id) FROM pgpush.events_legacy),
        pg_sequence_last_value(pg_get_serial_sequence('pgpush.events_legacy', 'id')));
    first_at timestamptz := (SELECT min(created_at) FROM pgpush.events_legacy);
BEGIN
    EXECUTE format('ALTER TABLE pgpush.events ALTER COLUMN id RESTART WITH %s', coalesce(next_id, 0) + 1);
    IF first_at IS NULL THEN
        DROP TABLE pgpush.events_legacy;
        RETURN;
    END IF;
    ALTER TABLE pgpush.events_legacy ALTER COLUMN id DROP IDENTITY;
    EXECUTE format('ALTER TABLE pgpush.events ATTACH PARTITION pgpush.events_legacy FOR VALUES FROM (%L) TO (%L)',
                   date_trunc('hour', least(first_at, now())), date_trunc('hour', now()) + interval '1 hour');
END
$$;
-- +goose StatementEnd
CREATE INDEX events_xid_id_idx ON pgpush.events (xid, id);
CREATE TABLE pgpush.events_default PARTITION OF pgpush.events DEFAULT;
CREATE CONSTRAINT TRIGGER events_doorbell
    AFTER INSERT ON pgpush.events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.first_in_xact)
    EXECUTE FUNCTION pgpush.doorbell();

-- sequence as in 00006, also recording each transaction's id and time
-- ranges and channels, the highest number per hour in which transactions
-- began, and the channels' last numbers.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.sequence(p_flag boolean DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur  pg_snapshot;
    prev pg_snapshot;
    last bigint;
    n    bigint;
    top  bigint;
BEGIN
    IF p_flag THEN
        PERFORM pg_advisory_lock(7370707573680003);
    ELSIF NOT p_flag THEN
        PERFORM pg_advisory_unlock(7370707573680003);
        IF NOT pg_try_advisory_lock(7370707573680004) THEN
            RETURN -1;
        END IF;
        PERFORM pg_advisory_unlock(7370707573680004);
    END IF;
    PERFORM pg_advisory_xact_lock(7370707573680005);
    cur := pg_current_snapshot();
    SELECT snapshot, last_seq INTO prev, last FROM pgpush.sequencer;
    WITH per_channel AS (
        -- Grouped by channel too, so that a large transaction's channels
        -- come from a hash of a few groups, not a sort of all its rows.
        SELECT e.xid, e.channel, min(e.id) AS first_id, max(e.id) AS last_id,
               min(e.created_at) AS first_at, max(e.created_at) AS last_at
        FROM pgpush.events e
        WHERE (e.xid >= pg_snapshot_xmax(prev) OR e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))))
          AND pg_visible_in_snapshot(e.xid, cur)
        GROUP BY e.xid, e.channel
    ), batch AS (
        SELECT xid, min(first_id) AS first_id, max(last_id) AS last_id,
               min(first_at) AS first_at, max(last_at) AS last_at, array_agg(channel) AS channels
        FROM per_channel GROUP BY xid
    ), numbered AS (
        INSERT INTO pgpush.commits (seq, xid, first_id, last_id, first_at, last_at, channels)
        SELECT last + row_number() OVER (ORDER BY last_id), xid, first_id, last_id, first_at, last_at, channels
        FROM batch
        ON CONFLICT (xid) DO NOTHING
        RETURNING seq, first_at, channels
    ), hours AS (
        INSERT INTO pgpush.event_hours AS h (hour, max_seq)
        SELECT date_trunc('hour', first_at), max(seq) FROM numbered GROUP BY 1
        ON CONFLICT (hour) DO UPDATE SET max_seq = greatest(h.max_seq, EXCLUDED.max_seq)
    ), chans AS (
        INSERT INTO pgpush.channels AS ch (channel, last_seq)
        SELECT c, max(seq) FROM numbered, unnest(channels) c GROUP BY c
        ON CONFLICT (channel) DO UPDATE SET last_seq = greatest(ch.last_seq, EXCLUDED.last_seq)
    )
    SELECT count(*), max(seq) INTO n, top FROM numbered;
    IF n > 0 THEN
        UPDATE pgpush.sequencer SET snapshot = cur, last_seq = top;
        IF NOT pg_try_advisory_xact_lock(7370707573680006) THEN
            PERFORM pg_notify('pgpush_sequenced', top::text);
        END IF;
    END IF;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- publish records its channel at once, so that a channel known only from
-- published events can be subscribed to before its first is numbered.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.publish(p_channel text, p_event text, p_data jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF p_channel IS NULL OR p_channel = '' THEN
        RAISE EXCEPTION 'pgpush.publish: channel is required';
    END IF;
    IF p_event IS NULL OR p_event = '' THEN
        RAISE EXCEPTION 'pgpush.publish: event is required';
    END IF;
    INSERT INTO pgpush.channels (channel) VALUES (p_channel) ON CONFLICT DO NOTHING;
    RETURN pgpush.emit(p_channel, p_event, coalesce(p_data, '{}'));
END
$$;
-- +goose StatementEnd

-- maintain_log creates the partitions of the coming day and, unless
-- p_retention is NULL, drops those whose events are all older than
-- p_retention (and deletes such events from the default partition),
-- oldest first, then forgets the numbers at or below the new horizon. A
-- partition goes only once every transaction that wrote to it is
-- numbered. DDL waits for locks at most 100 ms (it blocks writers while it
-- waits); what it cannot do now it does on a later call. It returns the
-- number of partitions dropped.
-- +goose StatementBegin
CREATE FUNCTION pgpush.maintain_log(p_retention interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    h       timestamptz;
    part    text;
    p       record;
    prev    pg_snapshot;
    cutoff  timestamptz := now() - p_retention;
    pending boolean;
    hz      bigint;
    dropped integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7370707573680007) THEN
        RETURN 0;
    END IF;
    PERFORM set_config('lock_timeout', '100ms', true);
    FOR h IN SELECT generate_series(date_trunc('hour', now()), date_trunc('hour', now()) + interval '24 hours', interval '1 hour') LOOP
        part := 'events_' || to_char(h AT TIME ZONE 'UTC', 'YYYYMMDD"h"HH24');
        CONTINUE WHEN to_regclass('pgpush.' || part) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE pgpush.%I PARTITION OF pgpush.events FOR VALUES FROM (%L) TO (%L)',
                           part, h, h + interval '1 hour');
        EXCEPTION
            WHEN invalid_object_definition THEN NULL; -- overlaps the first partition
            WHEN check_violation THEN NULL;           -- the default partition holds rows of that hour
            WHEN lock_not_available THEN EXIT;
        END;
    END LOOP;
    IF p_retention IS NULL THEN
        RETURN 0;
    END IF;

    SELECT snapshot INTO prev FROM pgpush.sequencer;
    FOR p IN SELECT c.oid::regclass AS rel,
                    (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'pgpush.events'::regclass AND NOT c.relpartbound IS NULL
               AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
             ORDER BY 2 LOOP
        EXIT WHEN p.upper > cutoff;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE xid >= $1 OR xid = ANY ($2))', p.rel)
            INTO pending USING pg_snapshot_xmax(prev), ARRAY(SELECT pg_snapshot_xip(prev));
        EXIT WHEN pending; -- a transaction that wrote to it is not numbered yet
        SELECT coalesce(max(max_seq), 0) INTO hz FROM pgpush.event_hours WHERE hour < p.upper;
        BEGIN
            EXECUTE format('DROP TABLE %s', p.rel);
        EXCEPTION WHEN lock_not_available THEN
            EXIT;
        END;
        UPDATE pgpush.sequencer SET horizon = greatest(horizon, hz);
        DELETE FROM pgpush.event_hours WHERE hour < p.upper;
        dropped := dropped + 1;
    END LOOP;

    -- Rows that landed in the default partition (no instance created the
    -- partition of their hour) go by DELETE, once numbered.
    IF EXISTS (SELECT 1 FROM pgpush.events_default WHERE created_at < cutoff) THEN
        SELECT coalesce(max(max_seq), 0) INTO hz FROM pgpush.event_hours WHERE hour < cutoff;
        DELETE FROM pgpush.events_default
        WHERE created_at < cutoff
          AND NOT (xid >= pg_snapshot_xmax(prev) OR xid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))));
        UPDATE pgpush.sequencer SET horizon = greatest(horizon, hz);
    END IF;
    RETURN dropped;
END
$$;
-- +goose StatementEnd
SELECT pgpush.maintain_log(NULL);

-- +goose Down
LOCK TABLE pgpush.events IN ACCESS EXCLUSIVE MODE;
DROP FUNCTION pgpush.maintain_log(interval);
CREATE TABLE pgpush.events_plain (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel       text NOT NULL,
    event         text NOT NULL,
    data          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    first_in_xact boolean NOT NULL DEFAULT false,
    origin        text
);
INSERT INTO pgpush.events_plain OVERRIDING SYSTEM VALUE
SELECT id, xid, channel, event, data, created_at, first_in_xact, origin FROM pgpush.events ORDER BY id;
-- +goose StatementBegin
DO $$
DECLARE
    next_id bigint := greatest(
        (SELECT max(id) FROM pgpush.events),
        pg_sequence_last_value(pg_get_serial_sequence('pgpush.events', 'id')));
BEGIN
    EXECUTE format('ALTER TABLE pgpush.events_plain ALTER COLUMN id RESTART WITH %s', coalesce(next_id, 0) + 1);
END
$$;
-- +goose StatementEnd
DROP TABLE pgpush.events;
ALTER TABLE pgpush.events_plain RENAME TO events;
ALTER INDEX pgpush.events_plain_pkey RENAME TO events_pkey;
CREATE INDEX events_xid_id_idx ON pgpush.events (xid, id);
CREATE INDEX events_channel_idx ON pgpush.events (channel, id);
CREATE INDEX events_created_at_idx ON pgpush.events (created_at);
CREATE CONSTRAINT TRIGGER events_doorbell
    AFTER INSERT ON pgpush.events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.first_in_xact)
    EXECUTE FUNCTION pgpush.doorbell();

ALTER TABLE pgpush.sequencer DROP COLUMN horizon;
DROP TABLE pgpush.event_hours;
DROP TABLE pgpush.channels;
DROP INDEX pgpush.commits_ids_idx;
ALTER TABLE pgpush.commits
    DROP COLUMN first_id, DROP COLUMN last_id, DROP COLUMN first_at, DROP COLUMN last_at, DROP COLUMN channels;

-- 00001's publish and 00006's sequence.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.publish(p_channel text, p_event text, p_data jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF p_channel IS NULL OR p_channel = '' THEN
        RAISE EXCEPTION 'pgpush.publish: channel is required';
    END IF;
    IF p_event IS NULL OR p_event = '' THEN
        RAISE EXCEPTION 'pgpush.publish: event is required';
    END IF;
    RETURN pgpush.emit(p_channel, p_event, coalesce(p_data, '{}'));
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.sequence(p_flag boolean DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur  pg_snapshot;
    prev pg_snapshot;
    last bigint;
    n    bigint;
    top  bigint;
BEGIN
    IF p_flag THEN
        PERFORM pg_advisory_lock(7370707573680003);
    ELSIF NOT p_flag THEN
        PERFORM pg_advisory_unlock(7370707573680003);
        IF NOT pg_try_advisory_lock(7370707573680004) THEN
            RETURN -1;
        END IF;
        PERFORM pg_advisory_unlock(7370707573680004);
    END IF;
    PERFORM pg_advisory_xact_lock(7370707573680005);
    cur := pg_current_snapshot();
    SELECT snapshot, last_seq INTO prev, last FROM pgpush.sequencer;
    WITH batch AS (
        SELECT e.xid, max(e.id) AS last_id FROM pgpush.events e
        WHERE (e.xid >= pg_snapshot_xmax(prev) OR e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))))
          AND pg_visible_in_snapshot(e.xid, cur)
        GROUP BY e.xid
    ), numbered AS (
        INSERT INTO pgpush.commits (seq, xid)
        SELECT last + row_number() OVER (ORDER BY last_id), xid FROM batch
        ON CONFLICT (xid) DO NOTHING
        RETURNING seq
    )
    SELECT count(*), max(seq) INTO n, top FROM numbered;
    IF n > 0 THEN
        UPDATE pgpush.sequencer SET snapshot = cur, last_seq = top;
        IF NOT pg_try_advisory_xact_lock(7370707573680006) THEN
            PERFORM pg_notify('pgpush_sequenced', top::text);
        END IF;
    END IF;
    RETURN n;
END
$$;
-- +goose StatementEnd
