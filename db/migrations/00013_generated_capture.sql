-- A capture trigger that costs the writer what a hand-written one would
-- (issue 15, item 3).
--
-- Measured with pgbench on the 2-core box (2026-12-01, one writer, one-row
-- INSERTs into the bench table, PostgreSQL CPU per transaction with
-- synchronous_commit off; relay trigger 56 µs, no trigger 49): the generic
-- capture_rows() cost 113 µs. Of that, about 14 µs went to iso_times (a
-- PL/pgSQL call and a jsonb_set per timestamp column), about 18 µs to
-- decoding the trigger's text[] arguments and branching on them on every
-- call, about 10 µs to the transition table of a statement trigger (for
-- one row a row trigger is cheaper: 13 µs less with fsync on), and about 9
-- µs to the deferred doorbell (a per-transaction setting, an after-trigger
-- event on pgpush.events, and a PL/pgSQL call at commit running three
-- statements). The function generated here for one table costs 71-82 µs: its
-- configuration is constants, its timestamps are formatted inline, and it
-- checks the doorbell once per transaction with expressions only.
--
-- install_capture(table, args) generates pgpush.capture_<table oid>() from
-- the same eight arguments the generic functions take (see 00002) and
-- attaches it as one row trigger, pgpush_capture, with those arguments
-- (unused by the function; kept so that the configuration can be read
-- back, as the Down step does). Columns are only ever read through the
-- row's jsonb, never by name, so no later ALTER TABLE can make the
-- function fail the writer's statement. A partitioned table keeps the
-- generic statement triggers (a row trigger on it would be cloned onto its
-- partitions under the same name), and so does a table with inheritance
-- children: a statement on it that changes its children's rows puts them
-- in its transition tables, while its row triggers never see them.
--
-- Measured with the row trigger, one INSERT of 200,000 rows took 2.1 s
-- against 1.8 s with the statement trigger: a one-row statement is the
-- common write, and it is the one this migration makes cheaper.
--
-- The doorbell, checked when the transaction writes its first event
-- instead of at commit: take the "committing" lock (7370707573680004) in
-- share mode for the rest of the transaction, then look at the "awake"
-- flag (7370707573680003); ring only if it is down. The sequencer sleeps
-- only once it can take "committing" alone (migration 00006), so a writer
-- that saw the flag up is read by its last round however long the
-- transaction stays open; while such a transaction is open the sequencer
-- polls (at most every 100 ms) instead of sleeping. If "committing" is
-- held exclusively at that moment (the sequencer is going to sleep),
-- the writer rings. The transaction-local setting pgpush.doorbell, shared
-- with emit() and the generic functions, marks the check as done; a
-- rolled-back savepoint takes back the setting, the lock and the NOTIFY
-- together.

-- +goose Up
-- trigger_args splits pg_trigger.tgargs (each argument ends with a NUL).
-- +goose StatementBegin
CREATE FUNCTION pgpush.trigger_args(p_args bytea) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out  text[] := '{}';
    rest bytea  := p_args;
    i    integer;
BEGIN
    LOOP
        i := position('\x00'::bytea IN rest);
        EXIT WHEN i = 0;
        out := out || convert_from(substring(rest FROM 1 FOR i - 1), 'UTF8');
        rest := substring(rest FROM i + 1);
    END LOOP;
    RETURN out;
END
$$;
-- +goose StatementEnd

-- install_capture generates pgpush.capture_<oid>() for p_table from the
-- generic functions' eight arguments and attaches it as the row trigger
-- pgpush_capture. The caller drops the table's earlier capture triggers
-- (and then drop_unused_captures, its earlier function).
--
-- Names go into the generated code only as quoted literals, and the body
-- goes to CREATE FUNCTION as one quoted literal, so no table or column
-- name can end the code early; the regular expression uses no backslash,
-- which a writer's session with standard_conforming_strings off would
-- read differently. A function name already used by another table's
-- trigger (an OID reused after a dump and restore) is never replaced: the
-- new function gets a suffix.
-- +goose StatementBegin
CREATE FUNCTION pgpush.install_capture(p_table regclass, p_args text[]) RETURNS void
LANGUAGE plpgsql AS $gen$
DECLARE
    fname  text := 'capture_' || p_table::oid;
    fn     text;
    col    text;
    v      text;
    shapes text[] := ARRAY['', ''];
    bcast  text := '';
    entity text;
    chan   text;
    body   text;
BEGIN
    IF cardinality(p_args) IS DISTINCT FROM 8 THEN
        RAISE EXCEPTION 'pgpush.install_capture: want 8 arguments, got %', cardinality(p_args);
    END IF;
    entity := p_args[1];
    chan := p_args[2];
    WHILE EXISTS (SELECT 1 FROM pg_proc p JOIN pg_trigger t ON t.tgfoid = p.oid
                  WHERE p.pronamespace = 'pgpush'::regnamespace AND p.proname = fname AND t.tgrelid <> p_table) LOOP
        fname := 'capture_' || p_table::oid || '_' || floor(random() * 1e9)::bigint;
    END LOOP;
    fn := format('pgpush.%I', fname);
    -- shapes[1] and [2] turn new_row and old_row into what leaves the
    -- database: --only and --exclude (00002's visible_columns), then
    -- timestamps as ISO-8601 UTC with milliseconds and a Z (00002's
    -- iso_times). Only a value shaped as PostgreSQL writes a timestamp in
    -- JSON is converted: 'infinity' stays as it is, and so does the text
    -- of a column dropped and added again with another type under the
    -- same name, which a cast would turn into an error in the writer's
    -- statement.
    FOR i IN 1..2 LOOP
        v := (ARRAY['new_row', 'old_row'])[i];
        IF cardinality(p_args[4]::text[]) > 0 THEN
            shapes[i] := format(E'        %1$s := coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(%1$s) WHERE key = ANY (%2$L::text[]) AND NOT key = ANY (%3$L::text[])), ''{}'');\n',
                                v, p_args[4], p_args[3]);
        ELSIF cardinality(p_args[3]::text[]) > 0 THEN
            shapes[i] := format(E'        %1$s := %1$s - %2$L::text[];\n', v, p_args[3]);
        END IF;
        FOREACH col IN ARRAY p_args[5]::text[] LOOP
            shapes[i] := shapes[i] || format(E'        IF %1$s ->> %2$L ~ ''^[0-9]{4,}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]'' THEN\n            %1$s := jsonb_set(%1$s, ARRAY[%2$L], to_jsonb(to_char((%1$s ->> %2$L)::timestamptz AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')));\n        END IF;\n', v, col);
        END LOOP;
        FOREACH col IN ARRAY p_args[6]::text[] LOOP
            shapes[i] := shapes[i] || format(E'        IF %1$s ->> %2$L ~ ''^[0-9]{4,}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]'' THEN\n            %1$s := jsonb_set(%1$s, ARRAY[%2$L], to_jsonb(to_char((%1$s ->> %2$L)::timestamp, ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')));\n        END IF;\n', v, col);
        END LOOP;
    END LOOP;
    IF p_args[7] <> '' THEN
        bcast := format(E'        IF TG_OP = ANY (%L::text[]) THEN\n            INSERT INTO pgpush.events (channel, event, data) VALUES (''pgpush:broadcast'', %L, coalesce(new_row, old_row));\n        END IF;\n',
                        upper(p_args[8]), p_args[7]);
    END IF;

    body := format($f$
-- Generated by pgpush.install_capture (migration 00013).
DECLARE
    new_row  jsonb;
    old_row  jsonb;
    changed  jsonb;
    old_vals jsonb;
    setting  text;
    unlocked boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        new_row := to_jsonb(NEW);
%1$s        INSERT INTO pgpush.events (channel, event, data) VALUES (%3$L, %4$L, new_row);
    ELSIF TG_OP = 'UPDATE' THEN
        new_row := to_jsonb(NEW);
%1$s        old_row := to_jsonb(OLD);
%2$s        SELECT jsonb_object_agg(n.key, n.value), jsonb_object_agg(n.key, coalesce(old_row -> n.key, 'null'))
        INTO changed, old_vals
        FROM jsonb_each(new_row) n
        WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed IS NULL THEN
            RETURN NULL; -- nothing visible changed: send nothing
        END IF;
        INSERT INTO pgpush.events (channel, event, data, old_data)
        VALUES (%3$L, %5$L, new_row || jsonb_build_object('changed_fields', changed), old_vals);
    ELSE
        old_row := to_jsonb(OLD);
%2$s        INSERT INTO pgpush.events (channel, event, data) VALUES (%3$L, %6$L, old_row);
    END IF;
%7$s    -- The doorbell, checked once per transaction.
    IF coalesce(current_setting('pgpush.doorbell', true), '') = '' THEN
        setting := set_config('pgpush.doorbell', 'on', true);
        IF coalesce(current_setting('pgpush.two_phase', true), '') IN ('on', 'true', '1') THEN
            NULL; -- PostgreSQL refuses PREPARE after NOTIFY
        ELSIF NOT pg_try_advisory_xact_lock_shared(7370707573680004) THEN
            PERFORM pg_notify('pgpush_events', '');
        ELSIF pg_try_advisory_lock_shared(7370707573680003) THEN
            unlocked := pg_advisory_unlock_shared(7370707573680003);
            PERFORM pg_notify('pgpush_events', '');
        END IF;
    END IF;
    RETURN NULL;
END
$f$,
        shapes[1], shapes[2], chan, entity || ':created', entity || ':updated', entity || ':deleted', bcast);
    EXECUTE format('CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %L', fn, body);
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', fn, format('pgpush capture trigger of %s', p_table));
    EXECUTE format('CREATE TRIGGER pgpush_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s(%s)',
                   p_table, fn, (SELECT string_agg(quote_literal(a), ', ') FROM unnest(p_args) a));
END
$gen$;
-- +goose StatementEnd

-- drop_unused_captures drops the generated functions no trigger calls:
-- the one of a table just unwatched, or of a table since dropped. Only
-- the caller's own (another role's would fail the caller's watch), and
-- IF EXISTS: a concurrent watch may have dropped one already.
-- +goose StatementBegin
CREATE FUNCTION pgpush.drop_unused_captures() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    f text;
BEGIN
    FOR f IN SELECT format('pgpush.%I()', p.proname) FROM pg_proc p
             WHERE p.pronamespace = 'pgpush'::regnamespace AND p.proname ~ '^capture_[0-9]+(_[0-9]+)?$'
               AND pg_has_role(p.proowner, 'USAGE')
               AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid) LOOP
        EXECUTE format('DROP FUNCTION IF EXISTS %s', f);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Every watched table gets its generated function, but a partitioned one
-- or an inheritance parent (a partition or child already had a row
-- trigger).
-- +goose StatementBegin
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tg.tgrelid::regclass AS rel, pgpush.trigger_args(tg.tgargs) AS args
             FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
             WHERE tg.tgparentid = 0
               AND ((tg.tgname = 'pgpush_capture_insert' AND tg.tgfoid = 'pgpush.capture_rows'::regproc
                     AND c.relkind = 'r' AND NOT c.relhassubclass)
                 OR (tg.tgname = 'pgpush_capture' AND tg.tgfoid = 'pgpush.capture'::regproc)) LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS pgpush_capture ON %1$s; DROP TRIGGER IF EXISTS pgpush_capture_insert ON %1$s; '
                       'DROP TRIGGER IF EXISTS pgpush_capture_update ON %1$s; DROP TRIGGER IF EXISTS pgpush_capture_delete ON %1$s',
                       t.rel);
        PERFORM pgpush.install_capture(t.rel, t.args);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Back to the generic functions, with the arguments the row triggers kept:
-- statement triggers on a table, capture() on a partition or child.
-- +goose StatementBegin
DO $$
DECLARE
    t    record;
    args text;
BEGIN
    FOR t IN SELECT tg.tgrelid::regclass AS rel, pgpush.trigger_args(tg.tgargs) AS args,
                    c.relispartition OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) AS child
             FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_proc p ON p.oid = tg.tgfoid
             WHERE tg.tgname = 'pgpush_capture' AND p.pronamespace = 'pgpush'::regnamespace
               AND p.proname ~ '^capture_[0-9]+(_[0-9]+)?$' AND tg.tgparentid = 0 LOOP
        args := (SELECT string_agg(quote_literal(a), ', ') FROM unnest(t.args) a);
        EXECUTE format('DROP TRIGGER pgpush_capture ON %s', t.rel);
        IF t.child THEN
            EXECUTE format('CREATE TRIGGER pgpush_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION pgpush.capture(%s)',
                           t.rel, args);
        ELSE
            EXECUTE format('CREATE TRIGGER pgpush_capture_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)',
                           t.rel, args);
            EXECUTE format('CREATE TRIGGER pgpush_capture_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)',
                           t.rel, args);
            EXECUTE format('CREATE TRIGGER pgpush_capture_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION pgpush.capture_rows(%s)',
                           t.rel, args);
        END IF;
    END LOOP;
END
$$;
-- +goose StatementEnd
SELECT pgpush.drop_unused_captures();
DROP FUNCTION pgpush.drop_unused_captures();
DROP FUNCTION pgpush.install_capture(regclass, text[]);
DROP FUNCTION pgpush.trigger_args(bytea);
