-- Receipts for SOS: who of an alert's recipients was reached, by what and when,
-- who acknowledged, who could not be reached and why, and the durable timer of
-- each contact's socket-ack window (any node takes it, FOR UPDATE SKIP LOCKED).
ALTER TABLE sos_recipients
    ADD COLUMN contact_id uuid,
    ADD COLUMN reached_channel text,
    ADD COLUMN reached_at timestamptz,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN failed text,
    ADD COLUMN fallback_at timestamptz;
CREATE INDEX sos_recipients_fallback_due ON sos_recipients (fallback_at)
    WHERE fallback_at IS NOT NULL;

-- What the provider called what it accepted (a Twilio message SID), for its receipts;
-- `delivered` once the provider says the message reached the handset.
ALTER TABLE deliveries ADD COLUMN provider_ref text;
CREATE INDEX deliveries_provider_ref ON deliveries (provider_ref) WHERE provider_ref IS NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'sent', 'delivered', 'failed', 'skipped'));
