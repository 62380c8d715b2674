-- Two-phase commit. PostgreSQL refuses PREPARE TRANSACTION after NOTIFY,
-- and a prepared transaction holding pgpush's commit-order lock would stall
-- every other writer until COMMIT PREPARED. A transaction that will be
-- prepared says so with
--     SET LOCAL pgpush.two_phase = on;
-- its events are then written unsequenced, with no lock and no NOTIFY, and
-- become visible only if and when COMMIT PREPARED runs. Listeners sequence
-- such transactions when they check the log (on every doorbell and at least
-- every few seconds), so their events are delivered after COMMIT PREPARED
-- and never after ROLLBACK PREPARED.

-- +goose Up
ALTER TABLE pgpush.events ADD COLUMN unsequenced boolean NOT NULL DEFAULT false;
CREATE INDEX events_unsequenced_idx ON pgpush.events (xid) WHERE unsequenced;

-- One emit with an optional origin replaces the two overloads, so that the
-- two-phase rule lives in one place.
DROP FUNCTION pgpush.emit(text, text, jsonb);
DROP FUNCTION pgpush.emit(text, text, jsonb, text);
-- +goose StatementBegin
CREATE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb, p_origin text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    two_phase boolean := coalesce(current_setting('pgpush.two_phase', true), '') IN ('on', 'true', '1');
    first boolean := NOT two_phase AND coalesce(current_setting('pgpush.xact_sequenced', true), '') <> 'on';
    new_id bigint;
BEGIN
    IF first THEN
        PERFORM set_config('pgpush.xact_sequenced', 'on', true);
    END IF;
    INSERT INTO pgpush.events (channel, event, data, first_in_xact, origin, unsequenced)
    VALUES (p_channel, p_event, p_data, first, p_origin, two_phase)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
-- +goose StatementEnd

-- sequence_prepared gives a commit sequence number to every committed
-- transaction whose events were written unsequenced. A visible event row
-- belongs to a committed transaction, so no status check is needed. It
-- runs in its caller's (short) transaction and takes the same lock as
-- sequence_commit, so numbers stay in visibility order.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence_prepared() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    x xid8;
    s bigint;
    n integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pgpush.events WHERE unsequenced) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(7370707573680001);
    FOR x IN SELECT DISTINCT e.xid FROM pgpush.events e
             WHERE e.unsequenced AND NOT EXISTS (SELECT 1 FROM pgpush.commits c WHERE c.xid = e.xid)
             ORDER BY 1 LOOP
        INSERT INTO pgpush.commits (seq, xid) VALUES (nextval('pgpush.commit_seq'), x)
        ON CONFLICT (xid) DO NOTHING RETURNING seq INTO s;
        IF s IS NOT NULL THEN
            n := n + 1;
            PERFORM pg_notify('pgpush_events', s::text);
        END IF;
        -- Per transaction: one that became visible after the loop began
        -- must keep its flag until a later sweep sequences it.
        UPDATE pgpush.events SET unsequenced = false WHERE unsequenced AND xid = x;
    END LOOP;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION pgpush.sequence_prepared();
DROP FUNCTION pgpush.emit(text, text, jsonb, text);
-- +goose StatementBegin
CREATE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb, p_origin text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first boolean := coalesce(current_setting('pgpush.xact_sequenced', true), '') <> 'on';
    new_id bigint;
BEGIN
    IF first THEN
        PERFORM set_config('pgpush.xact_sequenced', 'on', true);
    END IF;
    INSERT INTO pgpush.events (channel, event, data, first_in_xact, origin)
    VALUES (p_channel, p_event, p_data, first, p_origin)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
-- +goose StatementEnd
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
DROP INDEX pgpush.events_unsequenced_idx;
ALTER TABLE pgpush.events DROP COLUMN unsequenced;
