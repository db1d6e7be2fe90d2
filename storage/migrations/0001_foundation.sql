-- Users, authentication and revocation.
CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL,
    display_name text NOT NULL,
    role text NOT NULL CHECK (role IN ('patient', 'relative', 'doctor', 'organizer', 'donor', 'admin')),
    phone text,
    password_hash text,
    external_sub text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per login; every refresh token rotated from it shares the family.
CREATE TABLE token_families (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text
);

CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    family_id uuid NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Revoked access tokens, kept until they would have expired anyway, so a
-- single node reloads its in-process revocation set after a restart.
CREATE TABLE revoked_access_tokens (
    jti uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
