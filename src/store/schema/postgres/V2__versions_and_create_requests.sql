-- Resource API v2: each resource's version (its etag; one more on every change), creates that
-- carry a request id (a retry gets the first answer, through any replica), and listings by
-- owner.
ALTER TABLE resources ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- What the create with request_id made, as it was then; kept for a day.
CREATE TABLE create_requests (
    request_id TEXT PRIMARY KEY,
    resource_id BIGINT NOT NULL,
    owner_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX create_requests_by_age ON create_requests (created_at);

CREATE INDEX resources_by_owner ON resources (owner_id, id);
