-- toolplane initial schema (SQLite dialect). Keep in step with ../postgres/0001_initial.sql.
-- Timestamps are BIGINT unix milliseconds unless the column says otherwise. Booleans are INTEGER 0/1: the sqlx `Any`
-- driver cannot decode SQLite values of a column declared BOOLEAN.

CREATE TABLE tenants (
    id                 TEXT    NOT NULL PRIMARY KEY,
    name               TEXT    NOT NULL,
    encrypt_public_key TEXT,
    created_at         BIGINT  NOT NULL
);
CREATE INDEX tenants_name_idx ON tenants (name);

CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    tenant_id    TEXT    REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL,
    key_prefix   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id);

-- `seq` is an insertion-order tiebreak for rows whose created_at collides (see the crate docs).
CREATE TABLE tool_builtin_providers (
    seq                   INTEGER      PRIMARY KEY AUTOINCREMENT,
    id                    TEXT         NOT NULL UNIQUE,
    name                  VARCHAR(256) NOT NULL DEFAULT 'API KEY 1',
    tenant_id             TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id               TEXT         NOT NULL,
    provider              VARCHAR(256) NOT NULL,
    encrypted_credentials TEXT         NOT NULL DEFAULT '{}',
    created_at            BIGINT       NOT NULL,
    updated_at            BIGINT       NOT NULL,
    is_default            INTEGER      NOT NULL DEFAULT 0,
    credential_type       VARCHAR(32)  NOT NULL DEFAULT 'api-key',
    expires_at            BIGINT       NOT NULL DEFAULT -1,
    CONSTRAINT unique_builtin_tool_provider UNIQUE (tenant_id, provider, name)
);

CREATE TABLE tool_label_bindings (
    id         TEXT        NOT NULL PRIMARY KEY,
    tool_id    VARCHAR(64) NOT NULL,
    tool_type  VARCHAR(40) NOT NULL,
    label_name VARCHAR(40) NOT NULL,
    CONSTRAINT unique_tool_label_bind UNIQUE (tool_id, label_name)
);

CREATE TABLE tool_files (
    id              TEXT          NOT NULL PRIMARY KEY,
    user_id         TEXT          NOT NULL,
    tenant_id       TEXT          NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id TEXT,
    file_key        VARCHAR(255)  NOT NULL,
    mimetype        VARCHAR(255)  NOT NULL,
    original_url    VARCHAR(2048),
    name            VARCHAR(255)  NOT NULL DEFAULT '',
    size            BIGINT        NOT NULL DEFAULT -1,
    created_at      BIGINT        NOT NULL
);
CREATE INDEX tool_file_conversation_id_idx ON tool_files (conversation_id);
CREATE INDEX tool_files_tenant_idx ON tool_files (tenant_id);

CREATE TABLE settings (
    key        TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
