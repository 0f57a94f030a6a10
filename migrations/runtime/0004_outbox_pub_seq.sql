-- The outbox's publication order (docs/architecture.md, "Events").  Writers no
-- longer take a lock to commit in seq order: a row is inserted with pub_seq
-- NULL, and the relay (the sequencer, one at a time under an advisory lock)
-- gives committed rows their pub_seq in a transaction of its own.  Readers
-- (Events.Since, the relay, consumers' cursors) use pub_seq, which only
-- committed rows get and which grows with every sequencing transaction, so a
-- reader that moved past a pub_seq can never see a lower one appear.  Rows
-- already there keep their seq as pub_seq: stored cursors stay right.
ALTER TABLE outbox ADD COLUMN pub_seq bigint UNIQUE;
UPDATE outbox SET pub_seq = seq;
CREATE SEQUENCE outbox_pub_seq AS bigint;
SELECT setval('outbox_pub_seq', coalesce((SELECT max(seq) FROM outbox), 0) + 1, false);
CREATE INDEX outbox_unsequenced ON outbox (seq) WHERE pub_seq IS NULL;
