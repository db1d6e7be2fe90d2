-- SOS positions are stored encrypted (storage/crypto.py) in `position`, as
-- "<lat>,<lon>,<accuracy>"; rows written before keep their plain columns.
ALTER TABLE sos_alerts ADD COLUMN position text;
ALTER TABLE sos_alerts ALTER COLUMN lat DROP NOT NULL, ALTER COLUMN lon DROP NOT NULL;
ALTER TABLE sos_locations ADD COLUMN position text;
ALTER TABLE sos_locations ALTER COLUMN lat DROP NOT NULL, ALTER COLUMN lon DROP NOT NULL;
