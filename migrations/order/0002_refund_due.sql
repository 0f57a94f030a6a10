-- Late refunds (services/order/order_refund.c): a payment approved for an
-- order that was cancelled first (its window closed, or the shopper
-- cancelled while the payment's event was on its way) must go back to the
-- shopper.  The payment saga writes the row in the transaction that applies
-- payment.approved, so the duty is never lost; the sweep refunds it through
-- PaymentService.Cancel (key "late-refund-<number>": a retry refunds once)
-- and marks it done, or refused when the payment service refuses for good
-- (the back office then refunds by hand: the order's history says so).

CREATE TABLE refund_due (
    number       text PRIMARY KEY,         -- the order's (one payment per order)
    payment_key  text NOT NULL,
    amount       bigint NOT NULL CHECK (amount >= 0),   -- what was approved
    reason       text NOT NULL,
    state        text NOT NULL DEFAULT 'due' CHECK (state IN ('due', 'done', 'refused')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- what the sweep looks for
CREATE INDEX refund_due_open ON refund_due (created_at) WHERE state = 'due';
