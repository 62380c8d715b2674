-- Room messages and notifications are pruned by EVENT_RETENTION every
-- minute: without an index on sent_at each prune reads the whole table.

-- +goose Up
CREATE INDEX room_messages_sent_at_idx ON pgpush.room_messages (sent_at);
CREATE INDEX notifications_sent_at_idx ON pgpush.notifications (sent_at);

-- +goose Down
DROP INDEX pgpush.notifications_sent_at_idx;
DROP INDEX pgpush.room_messages_sent_at_idx;
