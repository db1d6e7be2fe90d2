-- Emergency contacts, SOS alerts with their trail and audit, and the durable
-- outbox of deliveries (SMS, push, email) that any live node works through.
CREATE TABLE emergency_contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    contact_user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    phone text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (contact_user_id IS NOT NULL OR phone IS NOT NULL),
    UNIQUE (owner_id, contact_user_id)
);
CREATE INDEX emergency_contacts_owner ON emergency_contacts (owner_id, created_at);

CREATE TABLE sos_alerts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_alert_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'acknowledged', 'resolved', 'expired')),
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    accuracy_m double precision,
    note text,
    created_at timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by uuid REFERENCES users (id) ON DELETE SET NULL,
    closed_at timestamptz,
    closed_by uuid REFERENCES users (id) ON DELETE SET NULL,
    escalation_level int NOT NULL DEFAULT 0,
    -- When the next escalation is due; NULL once acknowledged, closed or at the last level.
    next_escalation_at timestamptz,
    expires_at timestamptz NOT NULL,
    UNIQUE (user_id, client_alert_id)
);
CREATE INDEX sos_alerts_escalation_due ON sos_alerts (next_escalation_at)
    WHERE next_escalation_at IS NOT NULL;
CREATE INDEX sos_alerts_open ON sos_alerts (expires_at)
    WHERE status IN ('active', 'acknowledged');

-- Who the alert went to: the raiser's contacts when it was raised.
CREATE TABLE sos_recipients (
    alert_id uuid NOT NULL REFERENCES sos_alerts (id) ON DELETE CASCADE,
    n int NOT NULL,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    name text NOT NULL,
    phone text,
    PRIMARY KEY (alert_id, n)
);
CREATE INDEX sos_recipients_user ON sos_recipients (user_id) WHERE user_id IS NOT NULL;

-- The trail after the raise point: at most one point per alert and second.
CREATE TABLE sos_locations (
    alert_id uuid NOT NULL REFERENCES sos_alerts (id) ON DELETE CASCADE,
    second bigint NOT NULL,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    accuracy_m double precision,
    at timestamptz NOT NULL,
    PRIMARY KEY (alert_id, second)
);

-- Who did what to an alert, and when.
CREATE TABLE sos_audit (
    id bigserial PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES sos_alerts (id) ON DELETE CASCADE,
    at timestamptz NOT NULL,
    actor_id uuid,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX sos_audit_alert ON sos_audit (alert_id, id);

-- Every message owed to someone by SMS, push or email, with its result.
-- Written in the transaction of what caused it; a worker on any node claims
-- due rows (FOR UPDATE SKIP LOCKED), so a node that dies mid-send leaves the
-- row to be claimed again when its lease runs out.
CREATE TABLE deliveries (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    source_id text NOT NULL,
    channel text NOT NULL CHECK (channel IN ('sms', 'push', 'email')),
    user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    address text,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    result text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_source ON deliveries (source, source_id, id);

-- Pushes owed to absent chat members now go through deliveries too.
INSERT INTO deliveries (source, source_id, channel, user_id, kind, title, body, data,
                        next_attempt_at, created_at)
SELECT 'chat', data ->> 'message_id', 'push', user_id, kind, title, body, data, created_at, created_at
  FROM push_due WHERE consumed_at IS NULL;
DROP TABLE push_due;
