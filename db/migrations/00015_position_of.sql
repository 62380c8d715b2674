-- Finding a resume id's position: cheaper to keep up, and fast to look up
-- on a large log (issue 15).
--
-- A `since` id is an event id; its position is the commit whose range of
-- event ids holds it. Migration 00008 found it through a GiST index over
-- those ranges, which every sequencer round kept for every commit it
-- numbered, and a join to the event itself. Measured on a scratch
-- database of 2.5 million commits (2026-12-01):
--
-- * Every round paid for the GiST: with pgbench, one client, a one-row
--   INSERT then a round (synchronous_commit off), 0.215 ms a round
--   (median of five) against 0.196 with a btree on first_id and the GiST
--   kept for commits of several events only. Most commits hold one event,
--   and a btree insert lands on the index's rightmost page.
-- * The lookup took 52 ms, 70 ms with JIT (its cost estimate passes
--   jit_above_cost): PostgreSQL made the check that the event is in the
--   commit a hash semi-join, reading the whole (xid, id) index of every
--   partition for the id. OFFSET 0 keeps that check a subplan run for
--   the candidate commit, two index probes: 0.3 ms. position_of runs with
--   jit = off of its own, though pgpush's pool turns JIT off too: behind
--   PgBouncer in transaction mode the pool's setting lands on whichever
--   server connection was lent when it connected, and a resume must not
--   depend on that.

--
-- The new indexes are built before the old one is dropped: building takes
-- a lock that holds up the sequencer's inserts into pgpush.commits (so
-- delivery, not writers) for as long as it takes, but lets its readers
-- on; only the DROP at the end, a moment before the commit, shuts them
-- out. During a rolling upgrade, instances still on the old code look
-- resume ids up with a query the new GiST index does not serve: slow
-- (hundreds of ms on a large log) until they are upgraded.

-- +goose Up
CREATE INDEX commits_first_id_idx ON pgpush.commits (first_id);
CREATE INDEX commits_id_ranges_idx ON pgpush.commits USING gist (int8range(first_id, last_id, '[]'))
    WHERE first_id < last_id;
DROP INDEX pgpush.commits_ids_idx;

-- position_of returns the position of event p_id and the horizon below
-- which resuming is refused, or NULLs when no numbered commit holds it.
-- +goose StatementBegin
CREATE FUNCTION pgpush.position_of(p_id bigint, OUT seq bigint, OUT horizon bigint)
LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    SELECT c.seq, s.horizon INTO seq, horizon
    FROM (SELECT k.seq, k.xid, k.first_at, k.last_at FROM pgpush.commits k
          WHERE k.first_id = p_id AND k.last_id = p_id
          UNION ALL
          SELECT k.seq, k.xid, k.first_at, k.last_at FROM pgpush.commits k
          WHERE k.first_id < k.last_id AND int8range(k.first_id, k.last_id, '[]') @> p_id) c,
         pgpush.sequencer s
    WHERE EXISTS (SELECT 1 FROM pgpush.events e
                  WHERE e.xid = c.xid AND e.id = p_id AND e.created_at BETWEEN c.first_at AND c.last_at
                  OFFSET 0); -- not a join: a probe of (xid, id) per candidate
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION pgpush.position_of(bigint);
CREATE INDEX commits_ids_idx ON pgpush.commits USING gist (int8range(first_id, last_id, '[]'))
    WHERE first_id IS NOT NULL;
DROP INDEX pgpush.commits_id_ranges_idx;
DROP INDEX pgpush.commits_first_id_idx;
