-- Chat: rooms, members with read markers, messages with a gapless per-room seq.
CREATE TABLE rooms (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL CHECK (kind IN ('direct', 'group')),
    title text,
    -- "<smaller user id>:<larger user id>" for direct rooms: one room per pair.
    direct_key text UNIQUE,
    -- The seq of the newest message; the row lock on it serialises sends to a room.
    last_seq bigint NOT NULL DEFAULT 0,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE room_members (
    room_id uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    read_seq bigint NOT NULL DEFAULT 0,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user ON room_members (user_id);

CREATE TABLE messages (
    room_id uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq bigint NOT NULL CHECK (seq > 0),
    id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    sender_id uuid NOT NULL REFERENCES users (id),
    client_msg_id text NOT NULL,
    text text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq),
    -- A retry of a send, from any socket on any node, finds the first message.
    UNIQUE (sender_id, room_id, client_msg_id)
);

-- Pushes owed to members who had no socket anywhere when something happened to
-- them; the notification service consumes these (consumed_at set when sent).
CREATE TABLE push_due (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    consumed_at timestamptz
);
CREATE INDEX push_due_pending ON push_due (id) WHERE consumed_at IS NULL;

-- One round trip per send. Each statement of a volatile function takes a new
-- snapshot, so once the room row is locked the idempotency check sees every
-- send committed before it: no gap, no duplicate, whichever node sends.
-- Returns no row when the sender is not a member of the room.
CREATE FUNCTION chat_send(p_room uuid, p_sender uuid, p_client_msg_id text, p_text text)
RETURNS TABLE (id uuid, seq bigint, text text, created_at timestamptz, created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
BEGIN
    PERFORM 1 FROM room_members m WHERE m.room_id = p_room AND m.user_id = p_sender;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT m.id, m.seq, m.text, m.created_at, false FROM messages m
         WHERE m.sender_id = p_sender AND m.room_id = p_room AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM rooms r WHERE r.id = p_room FOR UPDATE;
    RETURN QUERY
        SELECT m.id, m.seq, m.text, m.created_at, false FROM messages m
         WHERE m.sender_id = p_sender AND m.room_id = p_room AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = p_room RETURNING r.last_seq INTO v_seq;
    RETURN QUERY
        INSERT INTO messages AS m (room_id, seq, sender_id, client_msg_id, text)
        VALUES (p_room, v_seq, p_sender, p_client_msg_id, p_text)
        RETURNING m.id, m.seq, m.text, m.created_at, true;
END;
$$;
