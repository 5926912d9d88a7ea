-- MCP servers as tool providers (Dify's `tool_mcp_providers`), OAuth `state` values kept across the authorization
-- redirect (Dify keeps them in Redis), and toolplane's own MCP servers (`mcp_servers`, generalising Dify's
-- `app_mcp_servers`). Unlike Dify, every secret here is encrypted with the tenant key: the URL, each header value,
-- and the whole credentials document (client information and tokens).
CREATE TABLE tool_mcp_providers (
    id                    TEXT         NOT NULL PRIMARY KEY,
    name                  VARCHAR(40)  NOT NULL,
    server_identifier     VARCHAR(64)  NOT NULL,
    server_url            TEXT         NOT NULL,
    server_url_hash       VARCHAR(64)  NOT NULL,
    icon                  VARCHAR(255),
    tenant_id             TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id               TEXT         NOT NULL,
    encrypted_credentials TEXT,
    authed                BOOLEAN      NOT NULL DEFAULT FALSE,
    tools                 TEXT         NOT NULL DEFAULT '[]',
    created_at            BIGINT       NOT NULL,
    updated_at            BIGINT       NOT NULL,
    timeout               DOUBLE PRECISION NOT NULL DEFAULT 30,
    sse_read_timeout      DOUBLE PRECISION NOT NULL DEFAULT 300,
    encrypted_headers     TEXT,
    CONSTRAINT unique_mcp_provider_server_url UNIQUE (tenant_id, server_url_hash),
    CONSTRAINT unique_mcp_provider_name UNIQUE (tenant_id, name),
    CONSTRAINT unique_mcp_provider_server_identifier UNIQUE (tenant_id, server_identifier)
);

CREATE TABLE mcp_oauth_states (
    state          VARCHAR(128) NOT NULL PRIMARY KEY,
    tenant_id      TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider_id    TEXT         NOT NULL REFERENCES tool_mcp_providers (id) ON DELETE CASCADE,
    code_verifier  TEXT         NOT NULL,
    discovery      TEXT         NOT NULL,
    client_info    TEXT         NOT NULL,
    redirect_uri   TEXT         NOT NULL,
    expires_at     BIGINT       NOT NULL,
    created_at     BIGINT       NOT NULL
);
CREATE INDEX mcp_oauth_states_expires_idx ON mcp_oauth_states (expires_at);

CREATE TABLE mcp_servers (
    id            TEXT         NOT NULL PRIMARY KEY,
    tenant_id     TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          VARCHAR(255) NOT NULL,
    description   TEXT         NOT NULL DEFAULT '',
    server_code   VARCHAR(255) NOT NULL,
    status        VARCHAR(16)  NOT NULL DEFAULT 'active',
    entries       TEXT         NOT NULL DEFAULT '[]',
    api_key_hash  VARCHAR(64),
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL,
    CONSTRAINT unique_mcp_server_code UNIQUE (server_code),
    CONSTRAINT unique_mcp_server_name UNIQUE (tenant_id, name)
);
CREATE INDEX mcp_servers_tenant_idx ON mcp_servers (tenant_id);
