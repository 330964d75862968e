-- The exact filters of an event list, used together, are answered from one index: the
-- email's and the component's indexes also carry the other exact columns, so the rows
-- that fail them are passed over inside the index and only rows that match are read.
DROP INDEX events_by_email;
CREATE INDEX events_by_email ON events (email, created_at, id, environment, component);
DROP INDEX events_by_component;
CREATE INDEX events_by_component ON events (component, created_at, id, environment, email);
