-- Events from other services (applied once each), notifications with devices
-- and preferences, project tickers, and the outbox of events we produce.
CREATE TABLE applied_events (
    event_id text PRIMARY KEY,
    type text NOT NULL,
    source text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    read_at timestamptz
);
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC, id);

CREATE TABLE devices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    push_token text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE notification_preferences (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- {"<kind>": {"push": false, "sms": true, ...}}; absent means on.
    channels jsonb NOT NULL DEFAULT '{}',
    quiet_start time,
    quiet_end time,
    time_zone text NOT NULL DEFAULT 'UTC'
);

CREATE TABLE projects (
    id text PRIMARY KEY,
    organizer_id uuid REFERENCES users (id) ON DELETE SET NULL,
    title text,
    currency text,
    total_minor bigint NOT NULL DEFAULT 0,
    donors_count int NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE donations (
    event_id text PRIMARY KEY,
    project_id text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency text NOT NULL,
    donor_id text,
    donor_display text NOT NULL,
    message text,
    at timestamptz NOT NULL
);
CREATE INDEX donations_project ON donations (project_id, at DESC, event_id);
CREATE INDEX donations_donor ON donations (project_id, donor_id) WHERE donor_id IS NOT NULL;

-- Events to produce to Kafka, written in the transaction of what they report.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    topic text NOT NULL,
    key text,
    value jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
