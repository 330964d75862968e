-- The console's People page opens on the newest profiles.
CREATE INDEX social_users_by_creation ON social_users (created_at, user_id);
