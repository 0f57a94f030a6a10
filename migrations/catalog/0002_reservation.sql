-- Stock reservations: the lines of one order held out of the available stock
-- until the order is paid (committed), cancelled or expired (released), or
-- cancelled after payment (restocked).  See catalog_reservation.c.
--
-- Invariants, kept by catalog_reservation.c under row locks and checked here
-- where a constraint can say them:
--   * sku.reserved = the sum of the quantities of that SKU's lines in
--     reservations whose state is 'reserved' (committed lines have left
--     on_hand and reserved together);
--   * 0 <= sku.reserved <= sku.on_hand: the CHECK on sku from 0001, so
--     available (on_hand - reserved) is never negative.  SetStock refuses an
--     on_hand below reserved rather than breaking it: stock that is promised
--     to an order cannot be counted away; release the reservations first.

CREATE TABLE reservation (
    order_id    text PRIMARY KEY CHECK (order_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    state       text NOT NULL DEFAULT 'reserved'
                CHECK (state IN ('reserved', 'committed', 'released', 'restocked')),
    -- the order's payment window, for information and ops: the order service
    -- releases what expires
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- what ops (and the order service's sweeper) look for: open reservations by expiry
CREATE INDEX reservation_open_expiry ON reservation (expires_at) WHERE state = 'reserved';

CREATE TABLE reservation_line (
    order_id  text NOT NULL REFERENCES reservation (order_id),
    sku_id    bigint NOT NULL REFERENCES sku (id),
    quantity  integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku_id)
);
-- which orders hold a SKU (and the foreign key's look-ups)
CREATE INDEX reservation_line_sku ON reservation_line (sku_id);
