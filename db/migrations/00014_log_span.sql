-- Log partitions as long as the retention allows (issue 15).
--
-- Every sequencer round starts a scan on every partition of the log (the
-- batch is found by xid, which is not the partition key), and so does the
-- read of a transaction's events. With one partition per hour, the
-- number of partitions, and the cost of every round, grew with
-- EVENT_RETENTION: pgbench, one client, an INSERT then a round that
-- numbers and returns it (synchronous_commit off, 2026-12-01): 0.30 ms a
-- round with 4 partitions, 0.41 ms with 27 (24 h), 1.70 ms with 203 (a
-- week would be 171). A partition now spans a quarter of the retention,
-- rounded down to 1, 2, 3, 4, 6, 8 or 12 hours, or 1, 2, 4 or 7 days
-- (pgpush.log_span), so there are about seven whatever the retention.
-- The price: a partition is dropped once all of it is past the retention,
-- so events stay up to a span longer (24 h retention: up to 30 h, was
-- 25). The spans are aligned on 2000-01-01 00:00 UTC, so every instance
-- cuts time the same way.

-- +goose Up
-- log_span is the length of a log partition for a retention: a quarter
-- of it, rounded down to a length that divides a day or is whole days.
-- +goose StatementBegin
CREATE FUNCTION pgpush.log_span(p_retention interval) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(max(s), interval '1 hour')
    FROM unnest(ARRAY[interval '1 hour', interval '2 hours', interval '3 hours', interval '4 hours',
                      interval '6 hours', interval '8 hours', interval '12 hours', interval '1 day',
                      interval '2 days', interval '4 days', interval '7 days']) s
    WHERE s <= p_retention / 4
$$;
-- +goose StatementEnd

-- log_partitions lists the log's partitions with their bounds, the
-- default partition aside.
-- +goose StatementBegin
CREATE FUNCTION pgpush.log_partitions(OUT rel regclass, OUT lower timestamptz, OUT upper timestamptz)
RETURNS SETOF record LANGUAGE sql STABLE AS $$
    SELECT c.oid::regclass, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
         regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') b
    WHERE i.inhparent = 'pgpush.events'::regclass AND b IS NOT NULL
$$;
-- +goose StatementEnd

-- add_log_partition creates the partition [p_from, p_from + p_span),
-- named after its start and, unless it is an hour, its length. It returns
-- false when the locks it needs are busy (lock_timeout); another instance
-- creating the same partition, or rows of that time already in the
-- default partition, are not errors: the rows then stay where they go.
-- +goose StatementBegin
CREATE FUNCTION pgpush.add_log_partition(p_from timestamptz, p_span interval) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'events_' || to_char(p_from AT TIME ZONE 'UTC', 'YYYYMMDD"h"HH24')
                 || CASE WHEN p_span = interval '1 hour' THEN ''
                         ELSE '_' || (extract(epoch FROM p_span) / 3600)::bigint || 'h' END;
BEGIN
    IF to_regclass('pgpush.' || part) IS NOT NULL THEN
        RETURN true;
    END IF;
    EXECUTE format('CREATE TABLE pgpush.%I PARTITION OF pgpush.events FOR VALUES FROM (%L) TO (%L)',
                   part, p_from, p_from + p_span);
    RETURN true;
EXCEPTION
    WHEN invalid_object_definition THEN RETURN true; -- overlaps a partition made meanwhile
    WHEN check_violation THEN RETURN true;           -- the default partition holds rows of that time
    WHEN duplicate_table THEN RETURN true;
    WHEN lock_not_available THEN RETURN false;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.maintain_log(p_retention interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    h       timestamptz;
    hh      timestamptz;
    span    interval;
    this    timestamptz; -- the start of this hour
    origin  constant timestamptz := '2000-01-01 00:00:00+00';
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
    -- The partitions of this hour and the coming two, each one span
    -- long. Where partitions of another span (made before migration
    -- 00014, or by an instance with another retention) cover part of a
    -- span, the hours they leave uncovered get a partition each.
    span := pgpush.log_span(p_retention);
    this := date_bin(interval '1 hour', now(), origin);
    <<creating>>
    FOR h IN SELECT generate_series(date_bin(span, this, origin), date_bin(span, this + interval '2 hours', origin), span) LOOP
        IF NOT EXISTS (SELECT 1 FROM pgpush.log_partitions() l WHERE l.lower < h + span AND l.upper > h) THEN
            IF NOT pgpush.add_log_partition(h, span) THEN
                EXIT creating;
            END IF;
            CONTINUE;
        END IF;
        FOR hh IN SELECT generate_series(greatest(h, this), least(h + span, this + interval '3 hours') - interval '1 hour',
                                         interval '1 hour') LOOP
            CONTINUE WHEN EXISTS (SELECT 1 FROM pgpush.log_partitions() l WHERE l.lower <= hh AND l.upper > hh);
            IF NOT pgpush.add_log_partition(hh, interval '1 hour') THEN
                EXIT creating;
            END IF;
        END LOOP;
    END LOOP;
    IF p_retention IS NULL THEN
        RETURN 0;
    END IF;

    SELECT snapshot INTO prev FROM pgpush.sequencer;
    FOR p IN SELECT l.rel, l.upper FROM pgpush.log_partitions() l ORDER BY l.upper LOOP
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

-- +goose Down
-- 00012's maintain_log. The partitions stay as they are: they work with it.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.maintain_log(p_retention interval) RETURNS integer
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
    FOR h IN SELECT generate_series(date_trunc('hour', now()), date_trunc('hour', now()) + interval '2 hours', interval '1 hour') LOOP
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
DROP FUNCTION pgpush.add_log_partition(timestamptz, interval);
DROP FUNCTION pgpush.log_partitions();
DROP FUNCTION pgpush.log_span(interval);
