-- pgpush's own schema. Everything lives in the "pgpush" schema so that an
-- application's tables and pgpush's never collide.

-- +goose Up
CREATE SCHEMA IF NOT EXISTS pgpush;

CREATE TABLE pgpush.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL,
    role          text NOT NULL,
    attrs         jsonb NOT NULL DEFAULT '{}',
    password_hash text NOT NULL,
    disabled_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON pgpush.users (lower(email));

-- A session row is the server-side half of a cookie: deleting it ends the
-- session everywhere, which a signed cookie alone could not do.
CREATE TABLE pgpush.sessions (
    id         text PRIMARY KEY, -- sha256 of the cookie's token, never the token
    user_id    bigint NOT NULL REFERENCES pgpush.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON pgpush.sessions (user_id);

CREATE TABLE pgpush.grants (
    channel     text NOT NULL, -- may end in '*'
    role        text NOT NULL,
    can_publish boolean NOT NULL DEFAULT false,
    match       jsonb NOT NULL DEFAULT '{}', -- data field -> user attribute
    PRIMARY KEY (channel, role)
);

CREATE TABLE pgpush.watched (
    table_oid  oid PRIMARY KEY,
    table_name text NOT NULL, -- schema-qualified, quoted, for display
    entity     text NOT NULL,
    channel    text NOT NULL,
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every change and custom event is a row here; a NOTIFY only rings the bell.
-- id orders events inside one transaction; commits.seq orders transactions
-- by commit (see sequence_commit), and (seq, id) is the delivery order.
CREATE TABLE pgpush.events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel       text NOT NULL,
    event         text NOT NULL,
    data          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT statement_timestamp(),
    first_in_xact boolean NOT NULL DEFAULT false
);
CREATE INDEX events_xid_idx ON pgpush.events (xid);
CREATE INDEX events_channel_idx ON pgpush.events (channel, id);
CREATE INDEX events_created_at_idx ON pgpush.events (created_at);

CREATE SEQUENCE pgpush.commit_seq;

CREATE TABLE pgpush.commits (
    seq          bigint PRIMARY KEY,
    xid          xid8 NOT NULL UNIQUE,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- emit records one event for the current transaction. The first event of a
-- transaction is flagged so that exactly one deferred sequence_commit runs
-- per transaction, whatever the number of rows. The flag is a transaction-
-- local setting, so a rolled-back savepoint takes it back with its events.
-- +goose StatementBegin
CREATE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first boolean := coalesce(current_setting('pgpush.xact_sequenced', true), '') <> 'on';
    new_id bigint;
BEGIN
    IF first THEN
        PERFORM set_config('pgpush.xact_sequenced', 'on', true);
    END IF;
    INSERT INTO pgpush.events (channel, event, data, first_in_xact)
    VALUES (p_channel, p_event, p_data, first)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
-- +goose StatementEnd

-- sequence_commit runs once per transaction, deferred to commit time. It takes
-- a transaction-scoped advisory lock, held until the commit is visible, so
-- commit sequence numbers are handed out in commit order: when seq N is
-- visible, every seq below N is visible too or will never be. A reader that
-- pages by seq therefore cannot skip a transaction that committed late,
-- which paging by a bigserial assigned before commit would.
-- NOTIFY already serialises committing transactions on its own global lock,
-- so this adds little contention of its own.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7370707573680001); -- 'pgpush' commit order
    INSERT INTO pgpush.commits (seq, xid)
    VALUES (nextval('pgpush.commit_seq'), pg_current_xact_id())
    ON CONFLICT (xid) DO NOTHING
    RETURNING seq INTO s;
    IF s IS NOT NULL THEN
        PERFORM pg_notify('pgpush_events', s::text);
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER events_sequence_commit
    AFTER INSERT ON pgpush.events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.first_in_xact)
    EXECUTE FUNCTION pgpush.sequence_commit();

-- publish lets database code emit custom events:
--   SELECT pgpush.publish('alerts', 'stock:low', '{"sku":"A1"}');
-- +goose StatementBegin
CREATE FUNCTION pgpush.publish(p_channel text, p_event text, p_data jsonb DEFAULT '{}') RETURNS bigint
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

-- +goose Down
DROP SCHEMA pgpush CASCADE;
