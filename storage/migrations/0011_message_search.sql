-- Message search: full text in English and Russian (what the seeds' users write),
-- with trigram similarity for near misses. Only messages as they now read are
-- searchable: room events and deleted messages have no search vector.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN kind = 'text' AND NOT deleted
         THEN to_tsvector('english', text) || to_tsvector('russian', text) END
) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
CREATE INDEX messages_text_trgm ON messages USING gin (text gin_trgm_ops)
    WHERE kind = 'text' AND NOT deleted;
