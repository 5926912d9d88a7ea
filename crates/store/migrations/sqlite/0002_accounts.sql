-- Accounts: the people (or services) acting in a tenant. A tenant API key belongs to one account, and rows a caller
-- creates record that account as `user_id`, as Dify records its account ids.
CREATE TABLE accounts (
    id         TEXT        NOT NULL PRIMARY KEY,
    tenant_id  TEXT        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT        NOT NULL,
    role       VARCHAR(16) NOT NULL DEFAULT 'normal',
    created_at BIGINT      NOT NULL,
    CONSTRAINT accounts_tenant_name_key UNIQUE (tenant_id, name)
);

ALTER TABLE api_keys ADD COLUMN account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE;
