-- A profile's image: its type, when it was uploaded, and the unguessable name it is
-- stored under (a new one for each upload, so a replaced image's address dies with it).
ALTER TABLE social_users ADD COLUMN profile_image_extension TEXT;
ALTER TABLE social_users ADD COLUMN profile_image_uploaded_at BIGINT;
ALTER TABLE social_users ADD COLUMN profile_image_key TEXT;

-- Uploads a user may make: the digest of the secret in the upload address, until it
-- expires. Each is used once.
CREATE TABLE profile_image_uploads (
    token_digest TEXT   PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES social_users (user_id) ON DELETE CASCADE,
    extension    TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL
);
