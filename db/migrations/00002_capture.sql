-- The one generic change trigger function. `pgpush watch` attaches it to a
-- table with per-table arguments (see package triggers):
--   TG_ARGV[0] entity          e.g. 'order'
--   TG_ARGV[1] channel         e.g. 'order_changes'
--   TG_ARGV[2] exclude         text[] literal of columns that never leave the database
--   TG_ARGV[3] only            text[] literal; when non-empty, only these columns leave
--   TG_ARGV[4] timestamptz     text[] literal of timestamptz columns
--   TG_ARGV[5] timestamp       text[] literal of timestamp (without time zone) columns
--   TG_ARGV[6] broadcast type  '' for none
--   TG_ARGV[7] broadcast on    text[] literal of 'insert', 'update', 'delete'
-- Arguments rather than a lookup table keep the per-row cost to casts of
-- short literals: the trigger runs inside the writer's transaction.

-- +goose Up

-- iso_times rewrites timestamp columns as ISO-8601 UTC with milliseconds and
-- a 'Z', whatever the session's TimeZone, so clients get one format.
-- +goose StatementBegin
CREATE FUNCTION pgpush.iso_times(row_data jsonb, tz_cols text[], naive_cols text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    col text;
BEGIN
    FOREACH col IN ARRAY tz_cols LOOP
        IF jsonb_typeof(row_data -> col) = 'string' THEN
            -- coalesce: to_char('infinity') is NULL, and a NULL would
            -- turn the whole row NULL and fail the writer's statement.
            row_data := jsonb_set(row_data, ARRAY[col], to_jsonb(coalesce(to_char(
                (row_data ->> col)::timestamptz AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), row_data ->> col)));
        END IF;
    END LOOP;
    FOREACH col IN ARRAY naive_cols LOOP
        IF jsonb_typeof(row_data -> col) = 'string' THEN
            row_data := jsonb_set(row_data, ARRAY[col], to_jsonb(coalesce(to_char(
                (row_data ->> col)::timestamp, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), row_data ->> col)));
        END IF;
    END LOOP;
    RETURN row_data;
END
$$;
-- +goose StatementEnd

-- visible_columns applies --exclude and --only to a row. --only is applied
-- here, at run time, so a column added to the table later stays private.
-- +goose StatementBegin
CREATE FUNCTION pgpush.visible_columns(row_data jsonb, exclude_cols text[], only_cols text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN cardinality(only_cols) > 0 THEN
            coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each(row_data)
                      WHERE key = ANY (only_cols) AND NOT key = ANY (exclude_cols)), '{}')
        WHEN cardinality(exclude_cols) > 0 THEN row_data - exclude_cols
        ELSE row_data
    END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION pgpush.capture() RETURNS trigger
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
    new_row jsonb;
    old_row jsonb;
    changed jsonb;
    payload jsonb;
    action  text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_row := pgpush.iso_times(pgpush.visible_columns(to_jsonb(NEW), exclude_cols, only_cols), tz_cols, naive_cols);
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_row := pgpush.iso_times(pgpush.visible_columns(to_jsonb(OLD), exclude_cols, only_cols), tz_cols, naive_cols);
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

-- +goose Down
DROP FUNCTION pgpush.capture();
DROP FUNCTION pgpush.visible_columns(jsonb, text[], text[]);
DROP FUNCTION pgpush.iso_times(jsonb, text[], text[]);
