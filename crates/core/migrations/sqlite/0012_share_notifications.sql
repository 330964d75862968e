-- Pages a user shared: with every friend they had then (sent_to NULL) or with one
-- friend. Each recipient has a row saying whether, and when, they saw it.
CREATE TABLE share_notifications (
    event_id TEXT   PRIMARY KEY,
    user_id  TEXT   NOT NULL REFERENCES social_users (user_id) ON DELETE CASCADE,
    sent_at  BIGINT NOT NULL,
    url      TEXT   NOT NULL,
    title    TEXT   NOT NULL,
    sent_to  TEXT   REFERENCES social_users (user_id) ON DELETE CASCADE
);
CREATE INDEX share_notifications_by_sender ON share_notifications (user_id, sent_at, event_id);

CREATE TABLE share_notifications_seen (
    user_id  TEXT   NOT NULL REFERENCES social_users (user_id) ON DELETE CASCADE,
    event_id TEXT   NOT NULL REFERENCES share_notifications (event_id) ON DELETE CASCADE,
    sent_at  BIGINT NOT NULL,
    seen_at  BIGINT,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX share_notifications_seen_by_recipient ON share_notifications_seen (user_id, sent_at, event_id);
CREATE INDEX share_notifications_seen_by_event ON share_notifications_seen (event_id);
