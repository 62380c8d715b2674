-- A sequencer round that costs what it numbers, not what the log holds
-- (issue 15).
--
-- sequence() found the transactions that became visible since its last
-- snapshot with `xid >= xmax(prev) OR xid = ANY (xip(prev))`. PostgreSQL
-- has no statistics to estimate an inequality on xid8, so it guesses a
-- third of the rows for each arm, and the OR made every round a
-- sequential scan of the current hour's partition: measured in the
-- latency-100 bench (2026-12-01), a round took several milliseconds once
-- the hour held some 100,000 events, and the listener's backend used more
-- CPU than all the writers together. Now a round reads one closed xid
-- range of the (xid, id) index: from the oldest transaction that was in
-- progress at the previous snapshot and has committed since (or xmax of
-- that snapshot when there is none) to xmax of this one. A closed range
-- is estimated as a small fraction of the table, so the plan is an index
-- scan for custom and generic plans alike. The range covers a long
-- transaction's events only in the round in which it commits, once.
--
-- Both functions run with plan_cache_mode = force_generic_plan. A
-- PL/pgSQL statement is planned again for every call as long as its
-- custom plans look cheaper than the generic one, and planning the
-- numbering statement over some fifty partitions (a day of retention and
-- a day ahead) cost about 0.9 ms, ten times executing it: measured with
-- pgbench, an empty round took 1.07 ms before and 0.09 ms after. A
-- generic plan is made once, though, with the statistics of that moment:
-- made while the hour's partition is new and nearly empty, it would read
-- that partition sequentially for the rest of the hour (seen: 7 ms a
-- round). enable_seqscan = off keeps every plan on the indexes whatever
-- the sizes, and jit = off because the cost penalty that steers the
-- planner away from sequential scans (where one is unavoidable, as on the
-- one-row pgpush.sequencer) would otherwise make every statement
-- JIT-compiled (seen: 17 ms for the UPDATE of that one row).
--
-- maintain_log() now creates the partitions of the coming two hours, not
-- of the coming day: every round probes the (xid, id) index of every
-- partition, and every read of a transaction's events starts a scan on
-- each, so empty partitions a day ahead cost each round about a third of
-- its time (pgbench, one client: 0.21 ms a round with 27 partitions, 0.14
-- ms with 3). maintain_log runs every minute on the sequencer's instance;
-- if none runs for two hours, writes go to the default partition as
-- before. The empty partitions beyond that are dropped here.
--
-- sequence_events() numbers the same way and returns the events of the
-- transactions it numbered, so the sequencer reads them in the round's own
-- statement instead of a second query. Its rows reach the caller only
-- with the statement's commit: in autocommit the server sends
-- ReadyForQuery after the WAL flush, and the listener dispatches nothing
-- before it has read the whole result; a position is delivered only once
-- its number is durable.

-- +goose Up
-- sequence_round is sequence() that also returns the last number before
-- the round: the round numbered last + 1 to last + n.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence_round(p_flag boolean, OUT n bigint, OUT last bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
DECLARE
    cur  pg_snapshot;
    prev pg_snapshot;
    xipv xid8[];
    lo   xid8;
    top  bigint;
BEGIN
    IF p_flag THEN
        PERFORM pg_advisory_lock(7370707573680003);
    ELSIF NOT p_flag THEN
        PERFORM pg_advisory_unlock(7370707573680003);
        IF NOT pg_try_advisory_lock(7370707573680004) THEN
            n := -1;
            RETURN;
        END IF;
        PERFORM pg_advisory_unlock(7370707573680004);
    END IF;
    PERFORM pg_advisory_xact_lock(7370707573680005);
    cur := pg_current_snapshot();
    SELECT snapshot, last_seq INTO prev, last FROM pgpush.sequencer;
    -- Transactions in progress at prev that have committed since; most
    -- of them wrote no event, which the range scan below finds out.
    xipv := ARRAY(SELECT x FROM pg_snapshot_xip(prev) x WHERE pg_visible_in_snapshot(x, cur));
    lo := least(pg_snapshot_xmax(prev), (SELECT min(x) FROM unnest(xipv) x));
    WITH per_channel AS (
        -- Grouped by channel too, so that a large transaction's channels
        -- come from a hash of a few groups, not a sort of all its rows.
        SELECT e.xid, e.channel, min(e.id) AS first_id, max(e.id) AS last_id,
               min(e.created_at) AS first_at, max(e.created_at) AS last_at
        FROM pgpush.events e
        WHERE e.xid >= lo AND e.xid < pg_snapshot_xmax(cur)
          AND (e.xid >= pg_snapshot_xmax(prev) OR e.xid = ANY (xipv))
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
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.sequence(p_flag boolean DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$ SELECT n FROM pgpush.sequence_round(p_flag) $$;
-- +goose StatementEnd

-- sequence_events does what sequence(p_flag) does (p_flag true or NULL)
-- and returns up to p_limit events of the transactions it numbered, in
-- delivery order, in the listener's column order. No row means nothing
-- was numbered; p_limit rows may mean more remain, which the caller reads
-- page by page as any other listener does.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence_events(p_flag boolean, p_limit integer)
RETURNS TABLE (seq bigint, id bigint, channel text, event text, data text, created_at timestamptz,
               origin text, xid text, old_data text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $$
DECLARE
    n    bigint;
    last bigint;
    r    record;
BEGIN
    IF p_flag IS NOT NULL AND NOT p_flag THEN
        RAISE EXCEPTION 'pgpush.sequence_events: lowering the flag may number nothing; use sequence(false)';
    END IF;
    SELECT q.n, q.last INTO n, last FROM pgpush.sequence_round(p_flag) q;
    IF n <= 0 THEN
        RETURN;
    END IF;
    -- A loop, not RETURN QUERY: PostgreSQL 15 planned RETURN QUERY's
    -- statement again on every call (0.44 ms here), whatever
    -- plan_cache_mode, while a FOR loop's plan is kept.
    FOR r IN
        SELECT c.seq, e.id, e.channel, e.event, e.data::text AS data, e.created_at,
               coalesce(e.origin, '') AS origin, e.xid::text AS xid, e.old_data::text AS old_data
        FROM (SELECT * FROM pgpush.commits k WHERE k.seq > last ORDER BY k.seq LIMIT p_limit) c
        CROSS JOIN LATERAL (
            SELECT * FROM pgpush.events e
            WHERE e.xid = c.xid AND e.created_at BETWEEN c.first_at AND c.last_at
            ORDER BY e.id LIMIT p_limit) e
        ORDER BY c.seq, e.id LIMIT p_limit
    LOOP
        seq := r.seq; id := r.id; channel := r.channel; event := r.event; data := r.data;
        created_at := r.created_at; origin := r.origin; xid := r.xid; old_data := r.old_data;
        RETURN NEXT;
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

-- The empty partitions of the day ahead, beyond the coming two hours.
-- +goose StatementBegin
DO $$
DECLARE
    p        record;
    has_rows boolean;
BEGIN
    FOR p IN SELECT c.oid::regclass AS rel,
                    (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS lower
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'pgpush.events'::regclass
               AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT' LOOP
        CONTINUE WHEN p.lower <= date_trunc('hour', now()) + interval '2 hours';
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', p.rel) INTO has_rows;
        CONTINUE WHEN has_rows;
        EXECUTE format('DROP TABLE %s', p.rel);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION pgpush.sequence_events(boolean, integer);
-- 00008's maintain_log, and its day of partitions ahead.
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
DROP FUNCTION pgpush.sequence(boolean);
DROP FUNCTION pgpush.sequence_round(boolean);
-- 00008's sequence.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence(p_flag boolean DEFAULT NULL) RETURNS bigint
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
