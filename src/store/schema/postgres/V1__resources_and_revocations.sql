-- Ids and owner ids are u64 in the API, stored as the i64 with the same bits.
CREATE TABLE resources (
    id BIGINT PRIMARY KEY,
    owner_id BIGINT NOT NULL,
    name TEXT NOT NULL
);

-- A revoked token id (jti) is refused until expires_at (Unix seconds).
CREATE TABLE revocations (
    token_id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- next_resource_id only grows, so no id is ever given twice, across replicas too; resources is
-- the count, for the --max-resources limit. Both change only under a writer's row lock.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('next_resource_id', 0), ('resources', 0);
