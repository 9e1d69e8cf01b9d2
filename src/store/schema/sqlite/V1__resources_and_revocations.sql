-- Ids and owner ids are u64 in the API, stored as the i64 with the same bits.
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL,
    name TEXT NOT NULL
);

-- A revoked token id (jti) is refused until expires_at (Unix seconds).
CREATE TABLE revocations (
    token_id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- next_resource_id only grows, so no id is ever given twice; resources is the count, for the
-- --max-resources limit. Both change only under the writer's transaction.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES ('next_resource_id', 0), ('resources', 0);
