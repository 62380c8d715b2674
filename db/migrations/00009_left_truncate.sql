-- Live rows (issue 16): what a subscriber needs to hear that a row left its
-- view, and that a table was emptied.
--
-- An update's event keeps, in old_data, the old values of the fields it
-- changed. The server rebuilds the row as it was from them (the new row
-- with those fields put back) to judge whether a subscription could see it
-- before the update and cannot after: then it sends <entity>:left with the
-- old row. old_data never leaves the server.
--
-- TRUNCATE fires no row or statement trigger of INSERT/UPDATE/DELETE, so
-- `pgpush watch` also installs a TRUNCATE trigger, capture_truncate(),
-- which writes one <entity>:truncated event with empty data.

-- +goose Up
ALTER TABLE pgpush.events ADD COLUMN old_data jsonb;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_entity   text    := TG_ARGV[0];
    v_channel  text    := TG_ARGV[1];
    v_exclude  text[]  := TG_ARGV[2]::text[];
    v_only     text[]  := TG_ARGV[3]::text[];
    v_tz       text[]  := TG_ARGV[4]::text[];
    v_naive    text[]  := TG_ARGV[5]::text[];
    v_bcast    text    := TG_ARGV[6];
    bcast      boolean := TG_ARGV[6] <> '' AND lower(TG_OP) = ANY (TG_ARGV[7]::text[]);
    has_times  boolean := cardinality(TG_ARGV[4]::text[]) > 0 OR cardinality(TG_ARGV[5]::text[]) > 0;
    -- The first event of a transaction rings the doorbell (migration
    -- 00006); a two-phase transaction rings none.
    unflagged  boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
    ring       boolean := unflagged AND coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1');
    drop_cols  text[]  := v_exclude;
    n          bigint;
BEGIN
    IF cardinality(v_only) > 0 THEN
        drop_cols := drop_cols || ARRAY(
            SELECT a.attname::text FROM pg_attribute a
            WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
              AND NOT a.attname = ANY (v_only));
    END IF;

    -- The plain INSERT and DELETE cases get the smallest plan: for one
    -- row, starting the executor is most of the cost.
    IF TG_OP = 'INSERT' AND NOT bcast THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT v_channel, v_entity || ':created',
               CASE WHEN has_times THEN pgpush.iso_times(to_jsonb(r) - drop_cols, v_tz, v_naive) ELSE to_jsonb(r) - drop_cols END,
               ring AND row_number() OVER () = 1
        FROM new_rows r;
    ELSIF TG_OP = 'DELETE' AND NOT bcast THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT v_channel, v_entity || ':deleted',
               CASE WHEN has_times THEN pgpush.iso_times(to_jsonb(r) - drop_cols, v_tz, v_naive) ELSE to_jsonb(r) - drop_cols END,
               ring AND row_number() OVER () = 1
        FROM old_rows r;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1
        FROM (SELECT to_jsonb(r) - drop_cols AS j FROM new_rows r) s
        CROSS JOIN LATERAL (SELECT CASE WHEN has_times THEN pgpush.iso_times(s.j, v_tz, v_naive) ELSE s.j END AS v) t
        CROSS JOIN LATERAL (
            SELECT v_channel, v_entity || ':created', t.v
            UNION ALL
            SELECT 'pgpush:broadcast', v_bcast, t.v
        ) x (channel, event, data);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1
        FROM (SELECT to_jsonb(r) - drop_cols AS j FROM old_rows r) s
        CROSS JOIN LATERAL (SELECT CASE WHEN has_times THEN pgpush.iso_times(s.j, v_tz, v_naive) ELSE s.j END AS v) t
        CROSS JOIN LATERAL (
            SELECT v_channel, v_entity || ':deleted', t.v
            UNION ALL
            SELECT 'pgpush:broadcast', v_bcast, t.v
        ) x (channel, event, data);
    ELSE
        INSERT INTO pgpush.events (channel, event, data, first_in_xact, old_data)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1, x.old
        FROM (SELECT row_number() OVER () AS i, to_jsonb(r) - drop_cols AS j FROM new_rows r) nr
        JOIN (SELECT row_number() OVER () AS i, to_jsonb(r) - drop_cols AS j FROM old_rows r) o USING (i)
        CROSS JOIN LATERAL (SELECT
            CASE WHEN has_times THEN pgpush.iso_times(nr.j, v_tz, v_naive) ELSE nr.j END AS nv,
            CASE WHEN has_times THEN pgpush.iso_times(o.j, v_tz, v_naive) ELSE o.j END AS ov) t
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(e.key, e.value) AS changed,
                   jsonb_object_agg(e.key, coalesce(t.ov -> e.key, 'null')) AS old
            FROM jsonb_each(t.nv) e
            WHERE e.value IS DISTINCT FROM t.ov -> e.key) c
        CROSS JOIN LATERAL (
            SELECT 1, v_channel, v_entity || ':updated', t.nv || jsonb_build_object('changed_fields', c.changed), c.old
            UNION ALL
            SELECT 2, 'pgpush:broadcast', v_bcast, t.nv, NULL::jsonb WHERE bcast
        ) x (k, channel, event, data, old)
        WHERE c.changed IS NOT NULL -- nothing visible changed: send nothing
        ORDER BY nr.i, x.k;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF unflagged AND n > 0 THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entity        text   := TG_ARGV[0];
    channel       text   := TG_ARGV[1];
    exclude_cols  text[] := TG_ARGV[2]::text[];
    only_cols     text[] := TG_ARGV[3]::text[];
    tz_cols       text[] := TG_ARGV[4]::text[];
    naive_cols    text[] := TG_ARGV[5]::text[];
    bcast_type    text   := TG_ARGV[6];
    bcast_on      text[] := TG_ARGV[7]::text[];
    has_only      boolean := cardinality(only_cols) > 0;
    has_exclude   boolean := cardinality(exclude_cols) > 0;
    has_times     boolean := cardinality(tz_cols) > 0 OR cardinality(naive_cols) > 0;
    unflagged     boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
    new_row jsonb;
    old_row jsonb;
    changed jsonb;
    old_vals jsonb;
    payload jsonb;
    action  text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
        IF has_only THEN
            SELECT coalesce(jsonb_object_agg(key, value), '{}') INTO new_row FROM jsonb_each(new_row)
            WHERE key = ANY (only_cols) AND NOT key = ANY (exclude_cols);
        ELSIF has_exclude THEN
            new_row := new_row - exclude_cols;
        END IF;
        IF has_times THEN
            new_row := pgpush.iso_times(new_row, tz_cols, naive_cols);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
        IF has_only THEN
            SELECT coalesce(jsonb_object_agg(key, value), '{}') INTO old_row FROM jsonb_each(old_row)
            WHERE key = ANY (only_cols) AND NOT key = ANY (exclude_cols);
        ELSIF has_exclude THEN
            old_row := old_row - exclude_cols;
        END IF;
        IF has_times THEN
            old_row := pgpush.iso_times(old_row, tz_cols, naive_cols);
        END IF;
    END IF;

    IF TG_OP = 'INSERT' THEN
        action := 'created';
        payload := new_row;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT coalesce(jsonb_object_agg(n.key, n.value), '{}'),
               jsonb_object_agg(n.key, coalesce(old_row -> n.key, 'null')) INTO changed, old_vals
        FROM jsonb_each(new_row) AS n
        WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed = '{}' THEN
            RETURN NULL; -- nothing visible changed: send nothing
        END IF;
        action := 'updated';
        payload := new_row || jsonb_build_object('changed_fields', changed);
    ELSE
        action := 'deleted';
        payload := old_row;
    END IF;

    INSERT INTO pgpush.events (channel, event, data, first_in_xact, old_data)
    VALUES (channel, entity || ':' || action, payload,
            unflagged AND coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1'),
            old_vals);
    IF bcast_type <> '' AND lower(TG_OP) = ANY (bcast_on) THEN
        INSERT INTO pgpush.events (channel, event, data) VALUES ('pgpush:broadcast', bcast_type, coalesce(new_row, old_row));
    END IF;
    IF unflagged THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION pgpush.capture_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    unflagged boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
BEGIN
    INSERT INTO pgpush.events (channel, event, data, first_in_xact)
    VALUES (TG_ARGV[1], TG_ARGV[0] || ':truncated', '{}',
            unflagged AND coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1'));
    IF unflagged THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Every watched table gets its TRUNCATE trigger.
-- +goose StatementBegin
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN SELECT table_oid::regclass AS rel, entity, channel FROM pgpush.watched
             WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = table_oid) LOOP
        EXECUTE format('CREATE TRIGGER pgpush_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_truncate(%L, %L)',
                       w.rel, w.entity, w.channel);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tgrelid::regclass AS rel FROM pg_trigger WHERE tgname = 'pgpush_capture_truncate' LOOP
        EXECUTE format('DROP TRIGGER pgpush_capture_truncate ON %s', t.rel);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION pgpush.capture_truncate();

-- 00007's capture functions.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_entity   text    := TG_ARGV[0];
    v_channel  text    := TG_ARGV[1];
    v_exclude  text[]  := TG_ARGV[2]::text[];
    v_only     text[]  := TG_ARGV[3]::text[];
    v_tz       text[]  := TG_ARGV[4]::text[];
    v_naive    text[]  := TG_ARGV[5]::text[];
    v_bcast    text    := TG_ARGV[6];
    bcast      boolean := TG_ARGV[6] <> '' AND lower(TG_OP) = ANY (TG_ARGV[7]::text[]);
    has_times  boolean := cardinality(TG_ARGV[4]::text[]) > 0 OR cardinality(TG_ARGV[5]::text[]) > 0;
    -- The first event of a transaction rings the doorbell (migration
    -- 00006); a two-phase transaction rings none.
    unflagged  boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
    ring       boolean := unflagged AND coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1');
    drop_cols  text[]  := v_exclude;
    n          bigint;
BEGIN
    IF cardinality(v_only) > 0 THEN
        drop_cols := drop_cols || ARRAY(
            SELECT a.attname::text FROM pg_attribute a
            WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
              AND NOT a.attname = ANY (v_only));
    END IF;

    -- The plain INSERT and DELETE cases get the smallest plan: for one
    -- row, starting the executor is most of the cost.
    IF TG_OP = 'INSERT' AND NOT bcast THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT v_channel, v_entity || ':created',
               CASE WHEN has_times THEN pgpush.iso_times(to_jsonb(r) - drop_cols, v_tz, v_naive) ELSE to_jsonb(r) - drop_cols END,
               ring AND row_number() OVER () = 1
        FROM new_rows r;
    ELSIF TG_OP = 'DELETE' AND NOT bcast THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT v_channel, v_entity || ':deleted',
               CASE WHEN has_times THEN pgpush.iso_times(to_jsonb(r) - drop_cols, v_tz, v_naive) ELSE to_jsonb(r) - drop_cols END,
               ring AND row_number() OVER () = 1
        FROM old_rows r;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1
        FROM (SELECT to_jsonb(r) - drop_cols AS j FROM new_rows r) s
        CROSS JOIN LATERAL (SELECT CASE WHEN has_times THEN pgpush.iso_times(s.j, v_tz, v_naive) ELSE s.j END AS v) t
        CROSS JOIN LATERAL (
            SELECT v_channel, v_entity || ':created', t.v
            UNION ALL
            SELECT 'pgpush:broadcast', v_bcast, t.v
        ) x (channel, event, data);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1
        FROM (SELECT to_jsonb(r) - drop_cols AS j FROM old_rows r) s
        CROSS JOIN LATERAL (SELECT CASE WHEN has_times THEN pgpush.iso_times(s.j, v_tz, v_naive) ELSE s.j END AS v) t
        CROSS JOIN LATERAL (
            SELECT v_channel, v_entity || ':deleted', t.v
            UNION ALL
            SELECT 'pgpush:broadcast', v_bcast, t.v
        ) x (channel, event, data);
    ELSE
        INSERT INTO pgpush.events (channel, event, data, first_in_xact)
        SELECT x.channel, x.event, x.data, ring AND row_number() OVER () = 1
        FROM (SELECT row_number() OVER () AS i, to_jsonb(r) - drop_cols AS j FROM new_rows r) nr
        JOIN (SELECT row_number() OVER () AS i, to_jsonb(r) - drop_cols AS j FROM old_rows r) o USING (i)
        CROSS JOIN LATERAL (SELECT
            CASE WHEN has_times THEN pgpush.iso_times(nr.j, v_tz, v_naive) ELSE nr.j END AS nv,
            CASE WHEN has_times THEN pgpush.iso_times(o.j, v_tz, v_naive) ELSE o.j END AS ov) t
        CROSS JOIN LATERAL (
            SELECT jsonb_object_agg(e.key, e.value) AS changed FROM jsonb_each(t.nv) e
            WHERE e.value IS DISTINCT FROM t.ov -> e.key) c
        CROSS JOIN LATERAL (
            SELECT 1, v_channel, v_entity || ':updated', t.nv || jsonb_build_object('changed_fields', c.changed)
            UNION ALL
            SELECT 2, 'pgpush:broadcast', v_bcast, t.nv WHERE bcast
        ) x (k, channel, event, data)
        WHERE c.changed IS NOT NULL -- nothing visible changed: send nothing
        ORDER BY nr.i, x.k;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF unflagged AND n > 0 THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entity        text   := TG_ARGV[0];
    channel       text   := TG_ARGV[1];
    exclude_cols  text[] := TG_ARGV[2]::text[];
    only_cols     text[] := TG_ARGV[3]::text[];
    tz_cols       text[] := TG_ARGV[4]::text[];
    naive_cols    text[] := TG_ARGV[5]::text[];
    bcast_type    text   := TG_ARGV[6];
    bcast_on      text[] := TG_ARGV[7]::text[];
    has_only      boolean := cardinality(only_cols) > 0;
    has_exclude   boolean := cardinality(exclude_cols) > 0;
    has_times     boolean := cardinality(tz_cols) > 0 OR cardinality(naive_cols) > 0;
    unflagged     boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
    new_row jsonb;
    old_row jsonb;
    changed jsonb;
    payload jsonb;
    action  text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW);
        IF has_only THEN
            SELECT coalesce(jsonb_object_agg(key, value), '{}') INTO new_row FROM jsonb_each(new_row)
            WHERE key = ANY (only_cols) AND NOT key = ANY (exclude_cols);
        ELSIF has_exclude THEN
            new_row := new_row - exclude_cols;
        END IF;
        IF has_times THEN
            new_row := pgpush.iso_times(new_row, tz_cols, naive_cols);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD);
        IF has_only THEN
            SELECT coalesce(jsonb_object_agg(key, value), '{}') INTO old_row FROM jsonb_each(old_row)
            WHERE key = ANY (only_cols) AND NOT key = ANY (exclude_cols);
        ELSIF has_exclude THEN
            old_row := old_row - exclude_cols;
        END IF;
        IF has_times THEN
            old_row := pgpush.iso_times(old_row, tz_cols, naive_cols);
        END IF;
    END IF;

    IF TG_OP = 'INSERT' THEN
        action := 'created';
        payload := new_row;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT coalesce(jsonb_object_agg(n.key, n.value), '{}') INTO changed
        FROM jsonb_each(new_row) AS n
        WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed = '{}' THEN
            RETURN NULL; -- nothing visible changed: send nothing
        END IF;
        action := 'updated';
        payload := new_row || jsonb_build_object('changed_fields', changed);
    ELSE
        action := 'deleted';
        payload := old_row;
    END IF;

    INSERT INTO pgpush.events (channel, event, data, first_in_xact)
    VALUES (channel, entity || ':' || action, payload,
            unflagged AND coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1'));
    IF bcast_type <> '' AND lower(TG_OP) = ANY (bcast_on) THEN
        INSERT INTO pgpush.events (channel, event, data) VALUES ('pgpush:broadcast', bcast_type, coalesce(new_row, old_row));
    END IF;
    IF unflagged THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

ALTER TABLE pgpush.events DROP COLUMN old_data;
