-- Channels are a registry in the code (services/channels.py): a new one must
-- not need a schema change, so the database no longer lists their names.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_channel_check;
