-- A project's organizer is a user of the platform's own auth service: Lifeline
-- may hear of the project (project.updated) before, or without ever, hearing of
-- the user (user.created). Keep the reference, drop the foreign key, so events
-- apply in whatever order they come; a later user.created completes it.
ALTER TABLE projects DROP CONSTRAINT IF EXISTS projects_organizer_id_fkey;
