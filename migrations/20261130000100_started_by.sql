-- Who started each saga: the authenticated principal (auth.tokens_file or the client certificate), NULL
-- when sagad runs without authentication. Operator actions record theirs in the history event's detail.
ALTER TABLE sagas ADD COLUMN started_by text;
