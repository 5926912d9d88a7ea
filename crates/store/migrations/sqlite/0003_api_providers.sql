-- API tool providers imported from OpenAPI / Swagger / OpenAI-plugin specs (Dify's `tool_api_providers`).
-- `schema` keeps the original document; `tools_str` the parsed tool bundles (JSON); `credentials_str` the auth
-- settings (JSON) with the secret `api_key_value` encrypted by the tenant key.
CREATE TABLE tool_api_providers (
    id                TEXT         NOT NULL PRIMARY KEY,
    name              VARCHAR(255) NOT NULL,
    icon              VARCHAR(255) NOT NULL DEFAULT '',
    schema            TEXT         NOT NULL,
    schema_type_str   VARCHAR(40)  NOT NULL,
    user_id           TEXT         NOT NULL,
    tenant_id         TEXT         NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    description       TEXT         NOT NULL DEFAULT '',
    tools_str         TEXT         NOT NULL DEFAULT '[]',
    credentials_str   TEXT         NOT NULL DEFAULT '{}',
    privacy_policy    VARCHAR(255),
    custom_disclaimer TEXT         NOT NULL DEFAULT '',
    created_at        BIGINT       NOT NULL,
    updated_at        BIGINT       NOT NULL,
    CONSTRAINT unique_api_tool_provider UNIQUE (name, tenant_id)
);
CREATE INDEX tool_api_providers_tenant_idx ON tool_api_providers (tenant_id);
