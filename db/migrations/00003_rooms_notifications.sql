-- Chat rooms and notifications (SPEC §4), carried by the same event log as
-- row changes so that they span instances and survive reconnects.

-- +goose Up

-- origin names the socket an event came from ("<instance>:<conn>"), so a
-- room's join/leave announcements can skip their own sender.
ALTER TABLE pgpush.events ADD COLUMN origin text;

CREATE TABLE pgpush.room_messages (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id text NOT NULL,
    sender  text NOT NULL,
    message text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX room_messages_room_idx ON pgpush.room_messages (room_id, id);

-- A notification sent to a channel that no socket received yet stays
-- pending until the next socket joins it (or the retention passes).
CREATE TABLE pgpush.notifications (
    event_id     bigint PRIMARY KEY,
    channel      text NOT NULL,
    frame        jsonb NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX notifications_pending_idx ON pgpush.notifications (channel, event_id) WHERE delivered_at IS NULL;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb, p_origin text) RETURNS bigint
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

-- +goose Down
DROP FUNCTION pgpush.emit(text, text, jsonb, text);
DROP TABLE pgpush.notifications;
DROP TABLE pgpush.room_messages;
ALTER TABLE pgpush.events DROP COLUMN origin;
