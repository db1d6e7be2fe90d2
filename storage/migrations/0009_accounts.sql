-- Accounts that hold on a live socket: sessions (a login is a refresh family)
-- with when and from where they were used, email verification and blocking,
-- TOTP (secrets sealed with the data keys), one-time codes by email (hashed),
-- and the audit of what operators did.
ALTER TABLE users
    ADD COLUMN email_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN blocked_at timestamptz,
    ADD COLUMN totp_secret text,
    ADD COLUMN totp_pending text,
    ADD COLUMN totp_last_step bigint;

ALTER TABLE token_families
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN user_agent text,
    ADD COLUMN ip text;
CREATE INDEX token_families_live ON token_families (user_id) WHERE revoked_at IS NULL;

CREATE TABLE auth_codes (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose text NOT NULL,
    code_hash text NOT NULL,
    expires_at timestamptz NOT NULL,
    tries int NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, purpose)
);

CREATE TABLE admin_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    -- NULL: done by another service's event (Kafka users topic)
    actor_id uuid,
    action text NOT NULL,
    target_id uuid NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_target ON admin_audit (target_id, id);

-- A user another service told us about before user.created (a user.blocked that
-- came first): a row that user.created completes.
ALTER TABLE users ADD COLUMN placeholder boolean NOT NULL DEFAULT false;
