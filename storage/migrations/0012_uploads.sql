-- Attachments: an upload is announced, sent straight to object storage (S3, or
-- the node's folder on the embedded default), checked, then carried by one message.
CREATE TABLE uploads (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    mime text NOT NULL,
    size bigint NOT NULL CHECK (size > 0),
    object_key text NOT NULL,
    created_at timestamptz NOT NULL,
    -- Set once a message carries it; uploads never carried are deleted after a day.
    message_id uuid REFERENCES messages (id) ON DELETE SET NULL,
    n int
);
CREATE INDEX uploads_message ON uploads (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX uploads_unattached ON uploads (created_at) WHERE message_id IS NULL;
