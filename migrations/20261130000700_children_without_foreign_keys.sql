-- The saga log's child rows (steps, events, labels) without foreign keys. The store writes a child row only
-- in the statement that inserts or updates its saga, joined to the saga rows that statement wrote, and
-- retention deletes a saga's children in the statement that deletes the saga; so the constraints checked
-- nothing the store does not already guarantee, yet each checked every inserted event, step and label
-- with a lookup of its saga (about a seventh of the saga log's CPU per step outcome).
ALTER TABLE saga_steps DROP CONSTRAINT saga_steps_saga_id_fkey;
ALTER TABLE saga_events DROP CONSTRAINT saga_events_saga_id_fkey;
ALTER TABLE saga_labels DROP CONSTRAINT saga_labels_saga_id_fkey;
