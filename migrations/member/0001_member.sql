-- Members: accounts with argon2id password hashes, marketing consent, grades
-- and the address book.
--
-- Membership grades are configuration kept as data: exactly one is the
-- default that a new member gets.
CREATE TABLE grade (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    position    integer NOT NULL,
    is_default  boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX grade_one_default ON grade (is_default) WHERE is_default;
INSERT INTO grade (code, name, position, is_default) VALUES
    ('basic', '일반', 1, true),
    ('silver', '실버', 2, false),
    ('gold', '골드', 3, false),
    ('vip', 'VIP', 4, false);

CREATE TABLE member (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- stored lower-cased by the service; the index below makes the
    -- uniqueness case-insensitive whatever writes the row
    email               text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- crypto_pwhash_str (libsodium): "$argon2id$v=19$m=...,t=...,p=1$salt$hash"
    password_hash       text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    phone               text NOT NULL CHECK (phone ~ '^01[016789]-[0-9]{3,4}-[0-9]{4}$'),
    grade_code          text NOT NULL REFERENCES grade (code),
    email_consent       boolean NOT NULL DEFAULT false,
    email_consented_at  timestamptz,
    sms_consent         boolean NOT NULL DEFAULT false,
    sms_consented_at    timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    -- a consent has its time, a refusal none
    CHECK (email_consent = (email_consented_at IS NOT NULL)),
    CHECK (sms_consent = (sms_consented_at IS NOT NULL))
);
CREATE UNIQUE INDEX member_email ON member (lower(email));
CREATE INDEX member_grade ON member (grade_code);
-- dormant processing (later) looks for members idle since a date
CREATE INDEX member_last_active ON member ((coalesce(last_login_at, created_at)));

CREATE TABLE address (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id    bigint NOT NULL REFERENCES member (id) ON DELETE CASCADE,
    recipient    text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 50),
    phone        text NOT NULL CHECK (phone ~ '^01[016789]-[0-9]{3,4}-[0-9]{4}$'),
    postal_code  text NOT NULL CHECK (postal_code ~ '^[0-9]{5}$'),
    address1     text NOT NULL CHECK (length(address1) BETWEEN 1 AND 200),
    address2     text NOT NULL DEFAULT '' CHECK (length(address2) <= 200),
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX address_member ON address (member_id);
-- at most one default address per member
CREATE UNIQUE INDEX address_one_default ON address (member_id) WHERE is_default;
