-- capture() without per-row SQL-function calls: visible_columns() was a
-- SQL function planned on every call (half of the trigger's time in the
-- benchmark), and iso_times() ran even for tables without timestamp
-- columns. Same behaviour, less work inside the writer's transaction.

-- +goose Up
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

-- +goose Down
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
            RETURN NULL;
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
