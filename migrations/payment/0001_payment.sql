-- Payments (services/payment): one payment per order, as the PG confirmed
-- it, and every request to the PG with its answer (docs/architecture.md,
-- "Payment service").  Order numbers belong to the order service: no foreign
-- key crosses services.

-- The payment of an order.  The row is written (committed) before the PG's
-- confirm is sent, with status 'confirming', and is the lock that makes
-- concurrent confirms of one order wait (SELECT ... FOR UPDATE while the PG
-- is called).  A rejected confirm leaves status 'failed'; a later confirm of
-- another payment key of the same order (the window opened again) takes the
-- row over.
CREATE TABLE payment (
    order_number          text PRIMARY KEY,
    payment_key           text NOT NULL,
    status                text NOT NULL CHECK (status IN ('confirming', 'waiting_for_deposit',
                              'done', 'failed', 'cancelled', 'partially_cancelled', 'expired')),
    method                text NOT NULL DEFAULT '' CHECK (method IN ('', 'card',
                              'virtual_account', 'easy_pay')),
    currency              text NOT NULL DEFAULT 'KRW',
    amount                bigint NOT NULL CHECK (amount > 0),
    balance               bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    approved_at           timestamptz,
    last_transaction_key  text NOT NULL DEFAULT '',
    -- virtual accounts; va_secret is the per-payment secret the deposit
    -- callback must carry (compared, never answered to anyone)
    va_bank               text NOT NULL DEFAULT '',
    va_account_number     text NOT NULL DEFAULT '',
    va_customer_name      text NOT NULL DEFAULT '',
    va_due_date           text NOT NULL DEFAULT '',
    va_secret             text NOT NULL DEFAULT '',
    easy_pay_provider     text NOT NULL DEFAULT '',
    card_company          text NOT NULL DEFAULT '',
    card_number           text NOT NULL DEFAULT '',
    card_approve_no       text NOT NULL DEFAULT '',
    failure_code          text NOT NULL DEFAULT '',
    failure_message       text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_key ON payment (payment_key);

-- Each cancel the PG made (its transactionKey), for refunds and reports.
CREATE TABLE payment_cancel (
    transaction_key  text PRIMARY KEY,
    order_number     text NOT NULL REFERENCES payment (order_number),
    amount           bigint NOT NULL CHECK (amount > 0),
    reason           text NOT NULL,
    cancelled_at     text NOT NULL DEFAULT '',
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_cancel_order ON payment_cancel (order_number);

-- Every request to the PG and its answer, written in transactions of their
-- own (the request before it is sent, the answer when it came), so a crash
-- after the PG answered still leaves the record.  Never the Authorization
-- header; a virtual account's secret is masked in bodies.
CREATE TABLE pg_exchange (
    id               bigserial PRIMARY KEY,
    method           text NOT NULL,
    path             text NOT NULL,
    idempotency_key  text NOT NULL DEFAULT '',
    request_body     text NOT NULL DEFAULT '',
    status           integer,            -- HTTP status; NULL: no answer (yet); 0: none came
    response_body    text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT '',   -- transport failure (timeout, refused)
    duration_ms      integer,
    sent_at          timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz
);
CREATE INDEX pg_exchange_sent ON pg_exchange (sent_at);
