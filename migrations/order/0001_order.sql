-- Orders (services/order): orders placed from a cart, their lines (snapshots
-- of names and prices as they were), their state history, the per-day number
-- counter and the placement attempts that make a crash during placement
-- recoverable (docs/architecture.md, "Order service").  Member ids, SKU ids
-- and product ids belong to other services: no foreign key crosses services.

-- The last order number handed out per KST business day: numbers are
-- YYYYMMDD-NNNNNN.  Incremented in its own short transaction, committed
-- before the catalog is called, so a number is never handed out twice (a
-- failed placement leaves a gap) and placements never queue on this row.
CREATE TABLE order_number_day (
    day   date PRIMARY KEY,
    last  integer NOT NULL CHECK (last BETWEEN 1 AND 999999)
);

-- A number handed out to a placement that has not committed its order yet.
-- Written (committed) before the stock is reserved, deleted in the
-- transaction that inserts the order.  A row left behind by a crash or a
-- failure names a reservation (and maybe a coupon use) that no order owns:
-- the sweep releases both and deletes the row.
CREATE TABLE order_attempt (
    number           text PRIMARY KEY,
    idempotency_key  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_attempt_created ON order_attempt (created_at);

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    number          text NOT NULL UNIQUE CHECK (number ~ '^[0-9]{8}-[0-9]{6}$'),
    member_id       bigint NOT NULL CHECK (member_id >= 0),   -- 0: a guest
    -- the guest's cart (CartRef.guest_id), emptied once the order is paid
    guest_id        text NOT NULL DEFAULT '',
    status          text NOT NULL CHECK (status IN ('pending_payment', 'awaiting_deposit',
                        'paid', 'preparing', 'shipped', 'delivered', 'cancelled',
                        'refunded', 'partially_refunded')),
    channel         text NOT NULL CHECK (channel IN ('web_pc', 'web_mobile', 'external')),
    payment_method  text NOT NULL CHECK (payment_method IN ('card', 'virtual_account',
                        'easy_pay')),
    currency        text NOT NULL DEFAULT 'KRW',
    subtotal        bigint NOT NULL CHECK (subtotal >= 0),
    discount        bigint NOT NULL CHECK (discount >= 0),
    shipping_fee    bigint NOT NULL CHECK (shipping_fee >= 0),
    total           bigint NOT NULL CHECK (total >= 0),
    refunded        bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0),
    coupon_code     text NOT NULL DEFAULT '',
    recipient       text NOT NULL,
    phone           text NOT NULL,
    postal_code     text NOT NULL,
    address1        text NOT NULL,
    address2        text NOT NULL,
    orderer_name    text NOT NULL,
    orderer_phone   text NOT NULL,
    orderer_email   text NOT NULL,
    delivery_note   text NOT NULL,
    order_name      text NOT NULL,
    payment_due_at  timestamptz NOT NULL,
    placed_at       timestamptz NOT NULL DEFAULT now(),
    paid_at         timestamptz,
    cancelled_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_member ON orders (member_id, placed_at DESC, id DESC) WHERE member_id > 0;
-- what the expiry sweep looks for
CREATE INDEX orders_open_due ON orders (payment_due_at)
    WHERE status IN ('pending_payment', 'awaiting_deposit');

CREATE TABLE order_line (
    order_id     bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    sku_id       bigint NOT NULL,
    sku_code     text NOT NULL,
    product_id   bigint NOT NULL,
    name         text NOT NULL,
    option_text  text NOT NULL,
    unit_price   bigint NOT NULL CHECK (unit_price >= 0),
    quantity     integer NOT NULL CHECK (quantity > 0),
    line_total   bigint NOT NULL CHECK (line_total >= 0),
    gift         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (order_id, position)
);

CREATE TABLE order_status_history (
    id           bigserial PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status  text,                      -- NULL for the first entry
    to_status    text NOT NULL,
    actor        text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX order_status_history_order ON order_status_history (order_id, id);
