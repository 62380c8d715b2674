-- Commit order without a lock in the writer's transaction (issue 15).
--
-- Until now every transaction with events drew its commit sequence number
-- at commit, under an advisory lock held across its WAL flush, and rang
-- NOTIFY, which takes a cluster-wide lock across the flush too: writers
-- committed one at a time. Now writers only append their events, stamped
-- with their transaction id (pgpush.events.xid), and one sequencer numbers
-- transactions after they commit, as Skytools PgQ does: pgpush.sequence()
-- takes a snapshot, and what became visible since the previous one is a
-- batch. The sequencer is the listener of one instance, elected with a
-- session advisory lock; every instance reads the same pgpush.commits, so
-- resume ids work everywhere.
--
-- The doorbell: a writer NOTIFYs at most once per transaction, at commit,
-- and only while the sequencer sleeps. While the sequencer is awake and
-- reading it holds the "awake" advisory lock; a committing writer that
-- finds it held skips the NOTIFY. Every committing writer first takes the
-- "committing" lock in share mode, so the sequencer, before it sleeps,
-- releases "awake" and sleeps only once it can take "committing" for a
-- moment: every writer that skipped the doorbell has then finished, and
-- one more read covers it. Lock keys (per database):
--   7370707573680002  leader: held by the sequencer's connection
--   7370707573680003  awake: held by the sequencer while it reads
--   7370707573680004  committing: shared by writers while they commit
--   7370707573680005  one sequence() at a time
--   7370707573680006  follower: shared by the other instances' listeners

-- +goose Up

-- With no transaction writing events (prepared ones included: this waits
-- for them), number what the old way left unnumbered, committed two-phase
-- transactions, while its functions still exist; the snapshot taken below
-- then sees every transaction that used the old way as committed.
LOCK TABLE pgpush.events IN ACCESS EXCLUSIVE MODE;
SELECT pgpush.sequence_prepared();
DROP TRIGGER events_sequence_commit ON pgpush.events;
DROP FUNCTION pgpush.sequence_commit();
DROP FUNCTION pgpush.sequence_prepared();
DROP INDEX pgpush.events_unsequenced_idx;
ALTER TABLE pgpush.events DROP COLUMN unsequenced;
DROP SEQUENCE pgpush.commit_seq;

-- (xid, id) instead of (xid): the sequencer takes max(id) per transaction
-- from it, and readers page through a large transaction in id order
-- without sorting all of it for every page.
CREATE INDEX events_xid_id_idx ON pgpush.events (xid, id);
DROP INDEX pgpush.events_xid_idx;

-- The sequencer's state: everything visible in snapshot is numbered, up
-- to last_seq. One row.
CREATE TABLE pgpush.sequencer (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    snapshot pg_snapshot NOT NULL,
    last_seq bigint NOT NULL
);
INSERT INTO pgpush.sequencer (snapshot, last_seq)
SELECT pg_current_snapshot(), coalesce(max(seq), 0) FROM pgpush.commits;

-- emit records one event for the current transaction. The first event of
-- a transaction is flagged, so that exactly one deferred doorbell runs per
-- transaction, whatever the number of rows; the flag is a transaction-
-- local setting, so a rolled-back savepoint takes it back with its events.
-- A two-phase transaction (SET LOCAL pgpush.two_phase = on) rings nothing:
-- PostgreSQL refuses PREPARE after NOTIFY.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb, p_origin text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first boolean := coalesce(current_setting('pgpush.doorbell', true), '') = '';
    new_id bigint;
BEGIN
    IF first THEN
        PERFORM set_config('pgpush.doorbell', 'on', true);
        first := coalesce(current_setting('pgpush.two_phase', true), '') NOT IN ('on', 'true', '1');
    END IF;
    INSERT INTO pgpush.events (channel, event, data, first_in_xact, origin)
    VALUES (p_channel, p_event, p_data, first, p_origin)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
-- +goose StatementEnd

-- doorbell runs once per transaction, deferred to commit. Register as
-- committing first, then look at the flag: the sequencer's last read
-- before it sleeps waits for everyone registered, so a writer that saw
-- the flag up and skipped the NOTIFY is always read. The flag is only
-- looked at, not held: a transaction that rings early (SET CONSTRAINTS
-- ALL IMMEDIATE) and stays open must not keep the sequencer from raising
-- it again.
-- +goose StatementBegin
CREATE FUNCTION pgpush.doorbell() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7370707573680004);
    IF pg_try_advisory_lock_shared(7370707573680003) THEN
        PERFORM pg_advisory_unlock_shared(7370707573680003);
        PERFORM pg_notify('pgpush_events', '');
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER events_doorbell
    AFTER INSERT ON pgpush.events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.first_in_xact)
    EXECUTE FUNCTION pgpush.doorbell();

-- sequence numbers every transaction whose events became visible since
-- the last call, and returns how many. A transaction is numbered once:
-- it is invisible in the previous snapshot (in its in-progress list, or
-- at or past its xmax) and visible in this one. Inside a batch,
-- transactions go in the order of their last event id: one that waited
-- for another's row lock, or began after another committed, wrote its
-- last event after the other committed, so it comes later; the order per
-- row is commit order. The listeners of other instances hold the
-- follower lock in share mode and are told on pgpush_sequenced; with none,
-- the sequencer's commit takes no NOTIFY lock.
--
-- p_flag true raises the "awake" flag first. false lowers it and, while a
-- writer that may have seen it up is still committing, returns -1 without
-- numbering anything. NULL leaves it as it is.
--
-- One statement in a transaction of its own: each statement of a plpgsql
-- function reads with a new snapshot, so the one taken after the step
-- lock sees the previous sequence() committed, and only what is visible
-- in that snapshot (cur) is numbered, whatever later statements see.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence(p_flag boolean DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur  pg_snapshot;
    prev pg_snapshot;
    last bigint;
    n    bigint;
    top  bigint;
BEGIN
    IF p_flag THEN
        PERFORM pg_advisory_lock(7370707573680003);
    ELSIF NOT p_flag THEN
        PERFORM pg_advisory_unlock(7370707573680003);
        IF NOT pg_try_advisory_lock(7370707573680004) THEN
            RETURN -1;
        END IF;
        PERFORM pg_advisory_unlock(7370707573680004);
    END IF;
    PERFORM pg_advisory_xact_lock(7370707573680005);
    cur := pg_current_snapshot();
    SELECT snapshot, last_seq INTO prev, last FROM pgpush.sequencer;
    WITH batch AS (
        SELECT e.xid, max(e.id) AS last_id FROM pgpush.events e
        WHERE (e.xid >= pg_snapshot_xmax(prev) OR e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))))
          AND pg_visible_in_snapshot(e.xid, cur)
        GROUP BY e.xid
    ), numbered AS (
        INSERT INTO pgpush.commits (seq, xid)
        SELECT last + row_number() OVER (ORDER BY last_id), xid FROM batch
        ON CONFLICT (xid) DO NOTHING
        RETURNING seq
    )
    SELECT count(*), max(seq) INTO n, top FROM numbered;
    IF n > 0 THEN
        UPDATE pgpush.sequencer SET snapshot = cur, last_seq = top;
        IF NOT pg_try_advisory_xact_lock(7370707573680006) THEN
            PERFORM pg_notify('pgpush_sequenced', top::text);
        END IF;
    END IF;
    RETURN n;
END
$$;
-- +goose StatementEnd

-- sequencer_lead tries to make the calling session the sequencer; it
-- stays the sequencer until it resigns or the session ends.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequencer_lead() RETURNS boolean
LANGUAGE sql AS $$ SELECT pg_try_advisory_lock(7370707573680002) $$;
-- +goose StatementEnd

-- sequencer_follow(true) says the calling session's listener wants to be
-- told of new numbers; false takes that back (when it becomes the
-- sequencer itself).
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequencer_follow(p_on boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_on THEN
        PERFORM pg_advisory_lock_shared(7370707573680006);
    ELSE
        PERFORM pg_advisory_unlock_shared(7370707573680006);
    END IF;
END
$$;
-- +goose StatementEnd

-- sequencer_resign hands the role over at shutdown: the other instances
-- wake on the notification and one of them takes the lock.
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequencer_resign() RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_unlock(7370707573680003), pg_advisory_unlock(7370707573680002);
    SELECT pg_notify('pgpush_sequenced', 'resign');
$$;
-- +goose StatementEnd

-- +goose Down
-- With no transaction writing events, number everything committed so far
-- the new way, then go back to numbering at commit.
LOCK TABLE pgpush.events IN ACCESS EXCLUSIVE MODE;
-- +goose StatementBegin
DO $$
DECLARE
    prev pg_snapshot;
BEGIN
    SELECT snapshot INTO prev FROM pgpush.sequencer;
    -- Down runs in READ COMMITTED: this one statement has one snapshot.
    INSERT INTO pgpush.commits (seq, xid)
    SELECT (SELECT last_seq FROM pgpush.sequencer) + row_number() OVER (ORDER BY max(e.id)), e.xid
    FROM pgpush.events e
    WHERE (e.xid >= pg_snapshot_xmax(prev) OR e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(prev))))
    GROUP BY e.xid
    ON CONFLICT (xid) DO NOTHING;
END
$$;
-- +goose StatementEnd
DROP FUNCTION pgpush.sequencer_resign();
DROP FUNCTION pgpush.sequencer_follow(boolean);
DROP FUNCTION pgpush.sequencer_lead();
DROP FUNCTION pgpush.sequence(boolean);
DROP TRIGGER events_doorbell ON pgpush.events;
DROP FUNCTION pgpush.doorbell();
DROP TABLE pgpush.sequencer;
CREATE INDEX events_xid_idx ON pgpush.events (xid);
DROP INDEX pgpush.events_xid_id_idx;

CREATE SEQUENCE pgpush.commit_seq;
SELECT setval('pgpush.commit_seq', max(seq)) FROM pgpush.commits HAVING max(seq) > 0;
ALTER TABLE pgpush.events ADD COLUMN unsequenced boolean NOT NULL DEFAULT false;
CREATE INDEX events_unsequenced_idx ON pgpush.events (xid) WHERE unsequenced;

-- 00005's emit, sequence_prepared, and 00001's sequence_commit.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION pgpush.emit(p_channel text, p_event text, p_data jsonb, p_origin text DEFAULT NULL) RETURNS bigint
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
        UPDATE pgpush.events SET unsequenced = false WHERE unsequenced AND xid = x;
    END LOOP;
    RETURN n;
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION pgpush.sequence_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(7370707573680001);
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
