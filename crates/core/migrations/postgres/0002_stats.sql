-- Learning-session stats. Ids are canonical lowercase UUID text; user ids are text
-- because a token's user need not be a UUID.
CREATE TABLE stats_sessions (
    session_id    TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL,
    course_id     TEXT    NOT NULL,
    total_modules BIGINT  NOT NULL,
    average_score DOUBLE PRECISION NOT NULL, -- as posted
    score_units   BIGINT  NOT NULL, -- round(average_score × 10 000): what the totals sum
    time_studied  BIGINT  NOT NULL, -- milliseconds
    updated_at    BIGINT  NOT NULL  -- Unix microseconds
);
CREATE INDEX stats_sessions_by_owner ON stats_sessions (user_id, course_id);

-- One row per (user, course), changed in the same transaction as each session write.
-- Integer sums, so adding and removing contributions is exact.
CREATE TABLE stats_course_totals (
    user_id        TEXT    NOT NULL,
    course_id      TEXT    NOT NULL,
    session_count  BIGINT  NOT NULL,
    total_modules  BIGINT  NOT NULL,
    time_studied   BIGINT  NOT NULL,
    weighted_score BIGINT  NOT NULL, -- Σ score_units × total_modules
    score_sum      BIGINT  NOT NULL, -- Σ score_units
    PRIMARY KEY (user_id, course_id)
);
