-- Idempotency records of mutating RPCs (lib/idem.c): key -> stored reply.
CREATE TABLE rpc_idempotency (
    key          text PRIMARY KEY,
    method       text NOT NULL,
    request_hash bytea NOT NULL,
    reply        bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rpc_idempotency_created_at ON rpc_idempotency (created_at);
