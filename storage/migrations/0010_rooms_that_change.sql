-- Rooms that change: members with roles who come and go, edits and deletes.
-- Every change takes the room's next seq, as a message does, under the room's row lock.
ALTER TABLE room_members
    ADD COLUMN role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    -- The first seq this member may read: their member_added event (1 for founders).
    ADD COLUMN from_seq bigint NOT NULL DEFAULT 1;
UPDATE room_members m SET role = 'owner'
  FROM rooms r WHERE r.id = m.room_id AND r.kind = 'group' AND r.created_by = m.user_id;

-- Grows with every membership change; nodes compare it to what they cached.
ALTER TABLE rooms ADD COLUMN members_version bigint NOT NULL DEFAULT 0;

ALTER TABLE messages
    ADD COLUMN kind text NOT NULL DEFAULT 'text',
    ADD COLUMN target_id uuid,
    ADD COLUMN data jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN deleted boolean NOT NULL DEFAULT false;

-- chat_send also answers the room's members_version, so the sending node knows
-- whether the member list it cached is the one this message was written under.
DROP FUNCTION chat_send(uuid, uuid, text, text);
CREATE FUNCTION chat_send(p_room uuid, p_sender uuid, p_client_msg_id text, p_text text)
RETURNS TABLE (id uuid, seq bigint, text text, created_at timestamptz, created boolean,
               members_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_version bigint;
BEGIN
    PERFORM 1 FROM room_members m WHERE m.room_id = p_room AND m.user_id = p_sender;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT m.id, m.seq, m.text, m.created_at, false, r.members_version
          FROM messages m JOIN rooms r ON r.id = m.room_id
         WHERE m.sender_id = p_sender AND m.room_id = p_room AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM rooms r WHERE r.id = p_room FOR UPDATE;
    -- Under the lock: a removal that committed before this send is seen here.
    PERFORM 1 FROM room_members m WHERE m.room_id = p_room AND m.user_id = p_sender;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT m.id, m.seq, m.text, m.created_at, false, r.members_version
          FROM messages m JOIN rooms r ON r.id = m.room_id
         WHERE m.sender_id = p_sender AND m.room_id = p_room AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    UPDATE rooms r SET last_seq = r.last_seq + 1 WHERE r.id = p_room
        RETURNING r.last_seq, r.members_version INTO v_seq, v_version;
    RETURN QUERY
        INSERT INTO messages AS m (room_id, seq, sender_id, client_msg_id, text)
        VALUES (p_room, v_seq, p_sender, p_client_msg_id, p_text)
        RETURNING m.id, m.seq, m.text, m.created_at, true, v_version;
END;
$$;
