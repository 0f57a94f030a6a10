-- The consuming side of events (lib/consumer.h, docs/architecture.md "Events").
-- event_cursor: per producing service (source), the seq of the last event this
-- database has dealt with; a consumer pulls Events.Since(after_seq) from it.
-- inbox: one row per applied event, inserted in the transaction that applies
-- it (with the handler's changes and the cursor's move): the primary key makes
-- a repeated or concurrent delivery of the same event wait, then skip.
CREATE TABLE event_cursor (
    source     text PRIMARY KEY,
    after_seq  bigint NOT NULL DEFAULT 0 CHECK (after_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inbox (
    event_id   uuid PRIMARY KEY,
    source     text NOT NULL,
    seq        bigint NOT NULL,
    type       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_applied_at ON inbox (applied_at);
