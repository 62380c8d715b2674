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
-- generic statement triggers: a row trigger on it would be cloned onto its
-- partitions under the same name.
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
-- pgpush_capture. The caller drops the table's earlier capture triggers.
-- +goose StatementBegin
CREATE FUNCTION pgpush.install_capture(p_table regclass, p_args text[]) RETURNS void
LANGUAGE plpgsql AS $gen$
DECLARE
    fn     text := format('pgpush.%I', 'capture_' || p_table::oid);
    col    text;
    shape  text := '';
    bcast  text := '';
    entity text;
    chan   text;
BEGIN
    IF cardinality(p_args) IS DISTINCT FROM 8 THEN
        RAISE EXCEPTION 'pgpush.install_capture: want 8 arguments, got %', cardinality(p_args);
    END IF;
    entity := p_args[1];
    chan := p_args[2];
    -- shape turns the row's jsonb, in $v, into what leaves the database:
    -- --only and --exclude (00002's visible_columns), then timestamps as
    -- ISO-8601 UTC with milliseconds and a Z (00002's iso_times). Only a
    -- value shaped as PostgreSQL writes a timestamp in JSON is converted:
    -- 'infinity' stays as it is, and so does the text of a column that
    -- was dropped and added again with another type under the same name,
    -- which a cast would turn into an error in the writer's statement.
    IF cardinality(p_args[4]::text[]) > 0 THEN
        shape := format(E'        $v := coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each($v) WHERE key = ANY (%L::text[]) AND NOT key = ANY (%L::text[])), ''{}'');\n',
                        p_args[4], p_args[3]);
    ELSIF cardinality(p_args[3]::text[]) > 0 THEN
        shape := format(E'        $v := $v - %L::text[];\n', p_args[3]);
    END IF;
    FOREACH col IN ARRAY p_args[5]::text[] LOOP
        shape := shape || format(E'        IF $v ->> %1$L ~ ''^\\d{4,}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d'' THEN\n            $v := jsonb_set($v, ARRAY[%1$L], to_jsonb(to_char(($v ->> %1$L)::timestamptz AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')));\n        END IF;\n', col);
    END LOOP;
    FOREACH col IN ARRAY p_args[6]::text[] LOOP
        shape := shape || format(E'        IF $v ->> %1$L ~ ''^\\d{4,}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d'' THEN\n            $v := jsonb_set($v, ARRAY[%1$L], to_jsonb(to_char(($v ->> %1$L)::timestamp, ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')));\n        END IF;\n', col);
    END LOOP;
    IF p_args[7] <> '' THEN
        bcast := format(E'        IF TG_OP = ANY (%L::text[]) THEN\n            INSERT INTO pgpush.events (channel, event, data) VALUES (''pgpush:broadcast'', %L, coalesce(new_row, old_row));\n        END IF;\n',
                        upper(p_args[8]), p_args[7]);
    END IF;

    EXECUTE format($f$CREATE OR REPLACE FUNCTION %1$s() RETURNS trigger
LANGUAGE plpgsql AS $body$
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
%2$s        INSERT INTO pgpush.events (channel, event, data) VALUES (%4$L, %5$L, new_row);
    ELSIF TG_OP = 'UPDATE' THEN
        new_row := to_jsonb(NEW);
%2$s        old_row := to_jsonb(OLD);
%3$s        SELECT jsonb_object_agg(n.key, n.value), jsonb_object_agg(n.key, coalesce(old_row -> n.key, 'null'))
        INTO changed, old_vals
        FROM jsonb_each(new_row) n
        WHERE n.value IS DISTINCT FROM old_row -> n.key;
        IF changed IS NULL THEN
            RETURN NULL; -- nothing visible changed: send nothing
        END IF;
        INSERT INTO pgpush.events (channel, event, data, old_data)
        VALUES (%4$L, %6$L, new_row || jsonb_build_object('changed_fields', changed), old_vals);
    ELSE
        old_row := to_jsonb(OLD);
%3$s        INSERT INTO pgpush.events (channel, event, data) VALUES (%4$L, %7$L, old_row);
    END IF;
%8$s    -- The doorbell, checked once per transaction.
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
$body$$f$,
        fn, replace(shape, '$v', 'new_row'), replace(shape, '$v', 'old_row'),
        chan, entity || ':created', entity || ':updated', entity || ':deleted', bcast);
    EXECUTE format('COMMENT ON FUNCTION %s() IS %L', fn, format('pgpush capture trigger of %s', p_table));
    EXECUTE format('CREATE TRIGGER pgpush_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s(%s)',
                   p_table, fn, (SELECT string_agg(quote_literal(a), ', ') FROM unnest(p_args) a));
END
$gen$;
-- +goose StatementEnd

-- drop_unused_captures drops the generated functions no trigger calls:
-- the one of a table just unwatched, or of a table since dropped.
-- +goose StatementBegin
CREATE FUNCTION pgpush.drop_unused_captures() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'pgpush'::regnamespace AND p.proname ~ '^capture_[0-9]+$'
               AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid) LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- Every watched table gets its generated function, but a partitioned one
-- (a partition or child already had a row trigger).
-- +goose StatementBegin
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tg.tgrelid::regclass AS rel, pgpush.trigger_args(tg.tgargs) AS args
             FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
             WHERE tg.tgparentid = 0
               AND ((tg.tgname = 'pgpush_capture_insert' AND tg.tgfoid = 'pgpush.capture_rows'::regproc AND c.relkind = 'r')
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
               AND p.proname ~ '^capture_[0-9]+$' AND tg.tgparentid = 0 LOOP
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
