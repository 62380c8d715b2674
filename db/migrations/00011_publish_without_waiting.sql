-- publish registered a new channel at once (migration 00008), so that it
-- could be subscribed to before its first event was numbered. But an
-- INSERT that conflicts with a row another transaction has not committed
-- yet waits for that transaction: the first publish to a new channel inside
-- a long transaction held up every other publisher to that channel, and the
-- sequencer itself (it records the channels of what it numbers), so every
-- subscriber, until that transaction ended. Now only the sequencer
-- registers channels, in its own short statements: a channel is known once
-- its first event is numbered, a moment after its commit.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.publish(p_channel text, p_event text, p_data jsonb DEFAULT '{}') RETURNS bigint
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
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.publish(p_channel text, p_event text, p_data jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF p_channel IS NULL OR p_channel = '' THEN
        RAISE EXCEPTION 'pgpush.publish: channel is required';
    END IF;
    IF p_event IS NULL OR p_event = '' THEN
        RAISE EXCEPTION 'pgpush.publish: event is required';
    END IF;
    INSERT INTO pgpush.channels (channel) VALUES (p_channel) ON CONFLICT DO NOTHING;
    RETURN pgpush.emit(p_channel, p_event, coalesce(p_data, '{}'));
END
$$;
-- +goose StatementEnd
