-- toolplane's own workflows (Dify workflow DSL imported as YAML), their published versions, their runs with one
-- record per executed node, and Dify's `tool_workflow_providers` (workflows published as tools; `app_id` is the
-- toolplane workflow id, `version` the pinned published version).
CREATE TABLE workflows (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    dsl         TEXT    NOT NULL,
    created_by  TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX workflows_tenant_idx ON workflows (tenant_id);

CREATE TABLE workflow_versions (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id TEXT    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version     TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    dsl         TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    CONSTRAINT unique_workflow_version UNIQUE (workflow_id, version),
    CONSTRAINT unique_workflow_version_seq UNIQUE (workflow_id, seq)
);

CREATE TABLE workflow_runs (
    id          TEXT    NOT NULL PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    workflow_id TEXT    NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version     TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL,
    inputs      TEXT    NOT NULL DEFAULT '{}',
    outputs     TEXT,
    error       TEXT,
    elapsed_ms  REAL    NOT NULL DEFAULT 0,
    created_by  TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    finished_at BIGINT
);
CREATE INDEX workflow_runs_workflow_idx ON workflow_runs (tenant_id, workflow_id, created_at);

CREATE TABLE workflow_node_runs (
    id          TEXT    NOT NULL PRIMARY KEY,
    run_id      TEXT    NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_index  BIGINT  NOT NULL,
    node_id     TEXT    NOT NULL,
    node_type   TEXT    NOT NULL,
    title       TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL,
    inputs      TEXT    NOT NULL DEFAULT '{}',
    outputs     TEXT,
    error       TEXT,
    elapsed_ms  REAL    NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL,
    CONSTRAINT unique_workflow_node_run_index UNIQUE (run_id, node_index)
);

CREATE TABLE tool_workflow_providers (
    id                      TEXT         NOT NULL PRIMARY KEY,
    name                    VARCHAR(255) NOT NULL,
    label                   VARCHAR(255) NOT NULL DEFAULT '',
    icon                    VARCHAR(255) NOT NULL DEFAULT '',
    app_id                  TEXT         NOT NULL,
    version                 VARCHAR(255) NOT NULL DEFAULT '',
    user_id                 TEXT         NOT NULL,
    tenant_id               TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    description             TEXT         NOT NULL DEFAULT '',
    parameter_configuration TEXT         NOT NULL DEFAULT '[]',
    privacy_policy          VARCHAR(255) NOT NULL DEFAULT '',
    created_at              BIGINT       NOT NULL,
    updated_at              BIGINT       NOT NULL,
    CONSTRAINT unique_workflow_tool_provider UNIQUE (name, tenant_id),
    CONSTRAINT unique_workflow_tool_provider_app_id UNIQUE (tenant_id, app_id)
);
