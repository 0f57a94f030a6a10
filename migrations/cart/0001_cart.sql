-- Carts and promotions (services/cart).  A guest's cart lives in Redis (see
-- docs/architecture.md, "Cart"); a member's lives here, keyed by the member
-- id of the member service (no foreign key crosses services).  A cart holds
-- one line per SKU; prices are never stored: every read prices the cart from
-- the catalog.

CREATE TABLE cart (
    member_id    bigint PRIMARY KEY CHECK (member_id > 0),
    -- the applied coupon's code (one per cart), re-checked at every read
    coupon_code  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_item (
    member_id  bigint NOT NULL REFERENCES cart (member_id) ON DELETE CASCADE,
    sku_id     bigint NOT NULL CHECK (sku_id > 0),
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, sku_id)
);

-- Guest carts merged into member carts: a second merge of the same guest cart
-- (a retried login, a crash before the Redis copy was deleted) adds nothing.
CREATE TABLE merged_guest_cart (
    guest_id   text PRIMARY KEY CHECK (guest_id ~ '^[0-9a-f]{32}$'),
    member_id  bigint NOT NULL,
    merged_at  timestamptz NOT NULL DEFAULT now()
);

-- The shipping fee and the free-shipping threshold: one row.
CREATE TABLE shipping_policy (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    fee             bigint NOT NULL CHECK (fee BETWEEN 0 AND 1000000),
    -- 0: shipping is never free
    free_threshold  bigint NOT NULL CHECK (free_threshold BETWEEN 0 AND 1000000000),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shipping_policy (fee, free_threshold) VALUES (3000, 30000);

CREATE TABLE coupon (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code              text NOT NULL UNIQUE CHECK (code ~ '^[A-Z0-9_-]{3,32}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind              text NOT NULL CHECK (kind IN ('fixed', 'percentage')),
    amount            bigint NOT NULL DEFAULT 0 CHECK (amount >= 0),
    percent           integer NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
    max_discount      bigint NOT NULL DEFAULT 0 CHECK (max_discount >= 0),
    min_subtotal      bigint NOT NULL DEFAULT 0 CHECK (min_subtotal >= 0),
    starts_at         timestamptz,
    ends_at           timestamptz,
    total_limit       integer NOT NULL DEFAULT 0 CHECK (total_limit >= 0),
    per_member_limit  integer NOT NULL DEFAULT 0 CHECK (per_member_limit >= 0),
    member_only       boolean NOT NULL DEFAULT false,
    active            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (kind <> 'fixed' OR amount > 0),
    CHECK (kind <> 'percentage' OR percent > 0),
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);

-- One use of a coupon by an order.  RedeemCoupon locks the coupon's row
-- before counting, so limits hold under concurrent orders.
CREATE TABLE coupon_redemption (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    coupon_id    bigint NOT NULL REFERENCES coupon (id),
    order_id     text NOT NULL UNIQUE CHECK (length(order_id) BETWEEN 1 AND 64),
    member_id    bigint NOT NULL DEFAULT 0 CHECK (member_id >= 0),  -- 0: a guest
    redeemed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX coupon_redemption_coupon ON coupon_redemption (coupon_id, member_id);

CREATE TABLE gift_rule (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    min_subtotal    bigint NOT NULL DEFAULT 0 CHECK (min_subtotal >= 0),
    trigger_sku_id  bigint NOT NULL DEFAULT 0 CHECK (trigger_sku_id >= 0),
    gift_sku_id     bigint NOT NULL CHECK (gift_sku_id > 0),
    gift_quantity   integer NOT NULL CHECK (gift_quantity BETWEEN 1 AND 10),
    starts_at       timestamptz,
    ends_at         timestamptz,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (min_subtotal > 0 OR trigger_sku_id > 0),
    CHECK (starts_at IS NULL OR ends_at IS NULL OR starts_at < ends_at)
);
