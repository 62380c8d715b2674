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
-- rounded down to 1, 2, 3, 4, 6, 8, 12, 24, 48, 96 or 168 hours
-- (pgpush.log_span), so there are about seven whatever the retention.
-- The price: a partition is dropped once all of it is past the retention,
-- so events stay up to a span longer (24 h retention: up to 30 h, was
-- 25), and after the retention is lowered, partitions made for the old
-- one stay until all of each is past the new one. The spans are aligned
-- on 2000-01-01 00:00 UTC and computed in UTC whatever the session's
-- time zone, so every instance cuts time the same way. Where partitions
-- of another length already cover part of a span (hourly ones made
-- before this migration, or by an instance with another retention), each
-- stretch they leave uncovered gets one partition; where the default
-- partition holds rows of a span (no instance ran meanwhile), the hour
-- that holds them stays without one, and the rest of the span gets one.

-- +goose Up
-- log_span is the length of a log partition for a retention: a quarter
-- of it, rounded down to a length that divides a day or is whole days,
-- in hours (a day of the calendar is 23 or 25 hours across a daylight
-- saving change in the session's time zone).
-- +goose StatementBegin
CREATE FUNCTION pgpush.log_span(p_retention interval) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(max(s), interval '1 hour')
    FROM unnest(ARRAY[interval '1 hour', interval '2 hours', interval '3 hours', interval '4 hours',
                      interval '6 hours', interval '8 hours', interval '12 hours', interval '24 hours',
                      interval '48 hours', interval '96 hours', interval '168 hours']) s
    WHERE s <= p_retention / 4
$$;
-- +goose StatementEnd

-- log_partitions lists the log's partitions with their bounds, the
-- default partition aside. The bounds are read back from their text, so
-- the text is made in a DateStyle and time zone that read back exactly
-- (with DateStyle SQL a zone's abbreviation is printed, and IST or PST
-- are read as other zones than Asia/Kolkata's or Asia/Manila's).
-- +goose StatementBegin
CREATE FUNCTION pgpush.log_partitions(OUT rel regclass, OUT lower timestamptz, OUT upper timestamptz)
RETURNS SETOF record LANGUAGE sql STABLE SET DateStyle = 'ISO' SET TimeZone = 'UTC' AS $$
    SELECT c.oid::regclass, b[1]::timestamptz, b[2]::timestamptz
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
         regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') b
    WHERE i.inhparent = 'pgpush.events'::regclass AND b IS NOT NULL
$$;
-- +goose StatementEnd

-- add_log_partition creates the partition [p_from, p_to), named after its
-- start (UTC) and, unless it is the hour from p_from, its length (or, if
-- another partition has that name, after its start to the minute and its
-- length in minutes). It returns true when the partition is there, false
-- when the locks it needs are busy (lock_timeout), and NULL when it
-- cannot be made: it overlaps a partition made meanwhile, or the default
-- partition holds rows of that time (they stay there, and retention
-- deletes them).
-- +goose StatementBegin
CREATE FUNCTION pgpush.add_log_partition(p_from timestamptz, p_to timestamptz) RETURNS boolean
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    minutes bigint := (extract(epoch FROM p_to - p_from) / 60)::bigint;
    part    text;
    bounds  record;
BEGIN
    FOREACH part IN ARRAY ARRAY[
        'events_' || to_char(p_from, 'YYYYMMDD"h"HH24')
            || CASE WHEN date_part('minute', p_from) = 0 AND minutes = 60 THEN ''
                    WHEN date_part('minute', p_from) = 0 AND minutes % 60 = 0 THEN '_' || minutes / 60 || 'h'
                    ELSE to_char(p_from, 'MI') || '_' || minutes || 'm' END,
        'events_' || to_char(p_from, 'YYYYMMDD"h"HH24MI') || '_' || minutes || 'm'] LOOP
        IF to_regclass('pgpush.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE pgpush.%I PARTITION OF pgpush.events FOR VALUES FROM (%L) TO (%L)',
                           part, p_from, p_to);
            RETURN true;
        END IF;
        SELECT l.lower, l.upper INTO bounds FROM pgpush.log_partitions() l WHERE l.rel = to_regclass('pgpush.' || part);
        IF bounds.lower = p_from AND bounds.upper = p_to THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN NULL;
EXCEPTION
    WHEN invalid_object_definition OR check_violation OR duplicate_table THEN RETURN NULL;
    WHEN lock_not_available THEN RETURN false;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.maintain_log(p_retention interval) RETURNS integer
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $$
DECLARE
    h       timestamptz;
    t       timestamptz;
    stop    timestamptz;
    made    boolean;
    whole   boolean;
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
    -- long, aligned on the origin. Where partitions of another length
    -- (made before migration 00014, or by an instance with another
    -- retention) cover part of a span, each stretch they leave uncovered
    -- gets one partition; where the default partition holds rows of a
    -- stretch (no instance ran meanwhile), the hour that holds them stays
    -- without one.
    span := pgpush.log_span(p_retention);
    this := date_bin(interval '1 hour', now(), origin);
    <<creating>>
    FOR h IN SELECT generate_series(date_bin(span, this, origin), date_bin(span, this + interval '2 hours', origin), span) LOOP
        t := greatest(h, this);
        whole := NOT EXISTS (SELECT 1 FROM pgpush.log_partitions() l WHERE l.lower < h + span AND l.upper > h);
        WHILE t < least(h + span, this + interval '3 hours') LOOP
            SELECT l.upper INTO stop FROM pgpush.log_partitions() l WHERE l.lower <= t AND l.upper > t;
            IF FOUND THEN
                t := stop;
                CONTINUE;
            END IF;
            SELECT least(min(l.lower), h + span) INTO stop FROM pgpush.log_partitions() l WHERE l.lower > t;
            IF whole THEN
                made := pgpush.add_log_partition(h, stop); -- nothing of the span has one yet
                whole := false;
            ELSE
                made := pgpush.add_log_partition(t, stop);
            END IF;
            IF made IS NULL THEN
                -- Rows of the stretch wait in the default partition: this
                -- hour alone, then the rest from the next one.
                stop := least(stop, date_bin(interval '1 hour', t, origin) + interval '1 hour');
                made := pgpush.add_log_partition(t, stop);
            END IF;
            IF NOT made THEN
                EXIT creating; -- locks busy: next minute
            END IF;
            t := stop; -- made, or not to be made now
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
-- 00012's maintain_log, which makes hourly partitions. The empty ones
-- ahead that are not an hour long go, so that it makes those hours its
-- own way. The others stay until retention drops them: rows go to them
-- as before, while 00012's maintain_log tries, every minute and in vain,
-- to make hourly partitions over the part of them within its coming
-- three hours (each try waits up to lock_timeout for the table's lock).
-- +goose StatementBegin
DO $$
DECLARE
    p        record;
    has_rows boolean;
BEGIN
    FOR p IN SELECT l.rel FROM pgpush.log_partitions() l
             WHERE l.lower > now() AND l.upper - l.lower <> interval '1 hour' LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', p.rel) INTO has_rows;
        CONTINUE WHEN has_rows;
        EXECUTE format('DROP TABLE %s', p.rel);
    END LOOP;
END
$$;
-- +goose StatementEnd
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
DROP FUNCTION pgpush.add_log_partition(timestamptz, timestamptz);
DROP FUNCTION pgpush.log_partitions();
DROP FUNCTION pgpush.log_span(interval);
