-- The plugin daemon's tables, with the original's names and the columns Dify reads.
-- Ids are UUID strings; created_at/updated_at are BIGINT unix milliseconds; booleans are INTEGER 0/1.

CREATE TABLE plugins (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL UNIQUE,
    plugin_id TEXT NOT NULL,
    refers BIGINT NOT NULL DEFAULT 0,
    install_type TEXT NOT NULL DEFAULT 'local',
    manifest_type TEXT NOT NULL DEFAULT 'plugin',
    remote_declaration TEXT,
    source TEXT NOT NULL DEFAULT ''
);
CREATE INDEX idx_plugins_plugin_id ON plugins (plugin_id);
CREATE INDEX idx_plugins_install_type ON plugins (install_type);

CREATE TABLE plugin_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    runtime_type TEXT NOT NULL DEFAULT 'local',
    endpoints_setups BIGINT NOT NULL DEFAULT 0,
    endpoints_active BIGINT NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}',
    UNIQUE (tenant_id, plugin_id)
);
CREATE INDEX idx_plugin_installations_uid ON plugin_installations (plugin_unique_identifier);
CREATE INDEX idx_plugin_installations_plugin_id ON plugin_installations (plugin_id);

CREATE TABLE plugin_declarations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL UNIQUE,
    plugin_id TEXT NOT NULL,
    declaration TEXT NOT NULL
);
CREATE INDEX idx_plugin_declarations_plugin_id ON plugin_declarations (plugin_id);

CREATE TABLE plugin_readme_records (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    language TEXT NOT NULL,
    content TEXT NOT NULL,
    UNIQUE (plugin_unique_identifier, language)
);

CREATE TABLE tool_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    plugin_id TEXT NOT NULL
);
CREATE INDEX idx_tool_installations_tenant ON tool_installations (tenant_id, plugin_id);

CREATE TABLE ai_model_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    plugin_id TEXT NOT NULL
);
CREATE INDEX idx_ai_model_installations_tenant ON ai_model_installations (tenant_id, plugin_id);

CREATE TABLE agent_strategy_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    plugin_id TEXT NOT NULL
);
CREATE INDEX idx_agent_strategy_installations_tenant ON agent_strategy_installations (tenant_id, plugin_id);

CREATE TABLE datasource_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    plugin_id TEXT NOT NULL
);
CREATE INDEX idx_datasource_installations_tenant ON datasource_installations (tenant_id, plugin_id);

CREATE TABLE trigger_installations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    plugin_unique_identifier TEXT NOT NULL,
    plugin_id TEXT NOT NULL
);
CREATE INDEX idx_trigger_installations_tenant ON trigger_installations (tenant_id, plugin_id);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    name TEXT NOT NULL DEFAULT 'default',
    hook_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    expired_at BIGINT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_endpoints_tenant_plugin ON endpoints (tenant_id, plugin_id);

CREATE TABLE install_tasks (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    total_plugins BIGINT NOT NULL,
    completed_plugins BIGINT NOT NULL,
    plugins TEXT NOT NULL
);
CREATE INDEX idx_install_tasks_status ON install_tasks (status);
CREATE INDEX idx_install_tasks_tenant ON install_tasks (tenant_id, created_at);

CREATE TABLE tenant_storages (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    tenant_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, plugin_id)
);
