-- The catalog: categories (a tree), products, options and SKUs with stock.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE category (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,79}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id   bigint REFERENCES category (id),
    position    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX category_parent ON category (parent_id);

CREATE TABLE product (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug             text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,119}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    summary          text NOT NULL DEFAULT '' CHECK (length(summary) <= 1000),
    description_html text NOT NULL DEFAULT '',
    category_id      bigint NOT NULL REFERENCES category (id),
    images           jsonb NOT NULL DEFAULT '[]',
    options          jsonb NOT NULL DEFAULT '[]',
    published        boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_category ON product (category_id);
CREATE INDEX product_created ON product (created_at DESC, id DESC);
-- substring search on names, Korean included (trigrams work on any UTF-8 text)
CREATE INDEX product_name_trgm ON product USING gin (name gin_trgm_ops);

CREATE TABLE sku (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id     bigint NOT NULL REFERENCES product (id),
    code           text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    option_values  jsonb NOT NULL DEFAULT '[]',
    price          bigint NOT NULL CHECK (price >= 0 AND price <= 1000000000),
    on_hand        bigint NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved       bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sku_product ON sku (product_id);

-- Bumped by every catalog write in its transaction; instances learn the new
-- value through NOTIFY catalog_version and drop their read caches.
CREATE TABLE catalog_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO catalog_version VALUES (true, 1);
