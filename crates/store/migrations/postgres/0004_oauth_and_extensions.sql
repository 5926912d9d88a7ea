-- OAuth clients of tool providers (Dify's `tool_oauth_system_clients` / `tool_oauth_tenant_clients`) and
-- API-based extensions (`api_based_extensions`).
--
-- System clients: `encrypted_oauth_params` is base64(iv + AES-256-CBC(JSON params)) under SHA-256(SECRET_KEY),
-- Dify's format, so rows copied from a Dify database read back. Builtin providers use plugin_id ''.
CREATE TABLE tool_oauth_system_clients (
    id                     TEXT         NOT NULL PRIMARY KEY,
    plugin_id              VARCHAR(512) NOT NULL DEFAULT '',
    provider               VARCHAR(255) NOT NULL,
    encrypted_oauth_params TEXT         NOT NULL,
    CONSTRAINT tool_oauth_system_client_plugin_id_provider_idx UNIQUE (plugin_id, provider)
);

-- Tenant clients: `encrypted_oauth_params` is the JSON params with the secret fields of the provider's
-- `oauth_schema.client_schema` encrypted by the tenant key.
CREATE TABLE tool_oauth_tenant_clients (
    id                     TEXT         NOT NULL PRIMARY KEY,
    tenant_id              TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    plugin_id              VARCHAR(255) NOT NULL DEFAULT '',
    provider               VARCHAR(255) NOT NULL,
    enabled                BOOLEAN NOT NULL DEFAULT TRUE,
    encrypted_oauth_params TEXT         NOT NULL,
    CONSTRAINT unique_tool_oauth_tenant_client UNIQUE (tenant_id, plugin_id, provider)
);

-- API-based extensions: `api_key` is encrypted by the tenant key (Dify's hybrid format).
CREATE TABLE api_based_extensions (
    id           TEXT         NOT NULL PRIMARY KEY,
    tenant_id    TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         VARCHAR(255) NOT NULL,
    api_endpoint VARCHAR(255) NOT NULL,
    api_key      TEXT         NOT NULL,
    created_at   BIGINT       NOT NULL,
    CONSTRAINT unique_api_based_extension_name UNIQUE (tenant_id, name)
);
CREATE INDEX api_based_extension_tenant_idx ON api_based_extensions (tenant_id);
