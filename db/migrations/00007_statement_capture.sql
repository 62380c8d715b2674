-- A cheaper capture (issue 15, item 3). The row trigger called capture()
-- and then emit(), two PL/pgSQL calls and one INSERT per changed row.
-- capture_rows() is a statement trigger with transition tables: one
-- INSERT … SELECT per statement writes every event, which is what one
-- statement changing many rows needs, and is cheaper for one row too (no
-- second function call). The rules stay the row trigger's: created with
-- the new row, updated with the new row and changed_fields (nothing for
-- an UPDATE that changes no visible column), deleted with the old row;
-- --only and --exclude drop the same keys from every row of a statement,
-- so they are worked out once per statement (--only still at run time, so
-- a column added later stays private).
--
-- A transition table needs one trigger per operation, and a statement
-- trigger sees only statements on its own table: on a partition or an
-- inheritance child, which a statement on the parent also changes,
-- `pgpush watch` keeps the row trigger, capture(), which now writes its
-- event itself.
--
-- In an UPDATE's transition tables, the nth old row and the nth new row
-- are the same row: PostgreSQL appends both for each row it updates.

-- +goose Up

-- +goose StatementBegin
CREATE FUNCTION pgpush.capture_rows() RETURNS trigger
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

-- The row trigger for partitions and inheritance children: as 00004's,
-- with emit()'s INSERT and doorbell flag written in.
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

-- Watched tables get the statement triggers, with the same arguments,
-- unless they are a partition or an inheritance child.
-- +goose StatementBegin
DO $$
DECLARE
    t record;
    args text;
BEGIN
    FOR t IN SELECT tg.tgrelid::regclass AS rel, pg_get_triggerdef(tg.oid) AS def
             FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
             WHERE tg.tgname = 'pgpush_capture' AND NOT c.relispartition
               AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) LOOP
        args := substring(t.def FROM 'pgpush\.capture\((.*)\)$');
        EXECUTE format('DROP TRIGGER pgpush_capture ON %s', t.rel);
        EXECUTE format('CREATE TRIGGER pgpush_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)', t.rel, args);
        EXECUTE format('CREATE TRIGGER pgpush_capture_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)', t.rel, args);
        EXECUTE format('CREATE TRIGGER pgpush_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)', t.rel, args);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE
    t record;
    args text;
BEGIN
    FOR t IN SELECT tg.tgrelid::regclass AS rel, pg_get_triggerdef(tg.oid) AS def
             FROM pg_trigger tg WHERE tg.tgname = 'pgpush_capture_insert' LOOP
        args := substring(t.def FROM 'pgpush\.capture_rows\((.*)\)$');
        EXECUTE format('DROP TRIGGER pgpush_capture_insert ON %1$s; DROP TRIGGER IF EXISTS pgpush_capture_update ON %1$s; DROP TRIGGER IF EXISTS pgpush_capture_delete ON %1$s', t.rel);
        EXECUTE format('CREATE TRIGGER pgpush_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgpush.capture(%s)', t.rel, args);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP FUNCTION pgpush.capture_rows();
-- 00004's capture(), which calls emit().
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

    PERFORM pgpush.emit(channel, entity || ':' || action, payload);

    IF bcast_type <> '' AND lower(TG_OP) = ANY (bcast_on) THEN
        PERFORM pgpush.emit('pgpush:broadcast', bcast_type, coalesce(new_row, old_row));
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
