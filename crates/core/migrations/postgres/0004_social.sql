-- User profiles and friendships. A friendship row is one per pair: user_id1 asked
-- user_id2; accepted_at NULL means pending, set means friends.
CREATE TABLE social_users (
    user_id            TEXT    PRIMARY KEY,
    email              TEXT    NOT NULL,
    first_name         TEXT    NOT NULL,
    last_name          TEXT    NOT NULL,
    description        TEXT,
    dob                TEXT,
    gender             TEXT,
    school             TEXT,
    work               TEXT,
    location           TEXT,
    email_public       BOOLEAN NOT NULL DEFAULT FALSE,
    dob_public         BOOLEAN NOT NULL DEFAULT FALSE,
    gender_public      BOOLEAN NOT NULL DEFAULT FALSE,
    school_public      BOOLEAN NOT NULL DEFAULT FALSE,
    work_public        BOOLEAN NOT NULL DEFAULT FALSE,
    location_public    BOOLEAN NOT NULL DEFAULT FALSE,
    share_mode         TEXT    NOT NULL DEFAULT 'default_all',
    domain_allow_array TEXT    NOT NULL DEFAULT '[]', -- JSON array of domains
    domain_deny_array  TEXT    NOT NULL DEFAULT '[]',
    created_at         BIGINT  NOT NULL
);
CREATE INDEX social_users_by_name ON social_users (first_name, last_name, user_id);

CREATE TABLE friendships (
    user_id1     TEXT   NOT NULL REFERENCES social_users (user_id) ON DELETE CASCADE,
    user_id2     TEXT   NOT NULL REFERENCES social_users (user_id) ON DELETE CASCADE,
    requested_at BIGINT NOT NULL,
    accepted_at  BIGINT,
    PRIMARY KEY (user_id1, user_id2),
    CHECK (user_id1 <> user_id2)
);
-- One row per unordered pair: two users asking each other at once cannot make two.
CREATE UNIQUE INDEX friendships_one_per_pair ON friendships (LEAST(user_id1, user_id2), GREATEST(user_id1, user_id2));
CREATE INDEX friendships_by_user2 ON friendships (user_id2, user_id1);
-- Case-insensitive substring search on email and names.
CREATE INDEX social_users_email_trgm ON social_users USING gin (lower(email) gin_trgm_ops);
CREATE INDEX social_users_name_trgm ON social_users USING gin (lower(first_name || ' ' || last_name) gin_trgm_ops);
