-- The transactional outbox (docs/architecture.md, "Events"): a service inserts
-- an event in the same transaction as the change it reports, so both commit or
-- neither does.  payload is the packed protobuf event message named by type
-- (e.g. member.signed_up -> mall.member.MemberSignedUp).  The relay that
-- publishes the rows comes with the event bus.  seq is taken at insert, not at
-- commit: rows can become visible out of seq order.
CREATE TABLE outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type        text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
