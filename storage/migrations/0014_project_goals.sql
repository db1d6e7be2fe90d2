-- Project goals (project.updated's optional goal_minor) and finding projects by title.
ALTER TABLE projects ADD COLUMN goal_minor bigint CHECK (goal_minor IS NULL OR goal_minor > 0);
CREATE INDEX projects_title_trgm ON projects USING gin (title gin_trgm_ops);
CREATE INDEX projects_updated ON projects (updated_at DESC, id);
