-- History's second tier: rows moved to MongoDB leave PostgreSQL, so nothing may
-- hold a foreign key to them. An upload keeps naming the message that carries it.
ALTER TABLE uploads DROP CONSTRAINT IF EXISTS uploads_message_id_fkey;
CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at);
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (created_at) WHERE status <> 'pending';
