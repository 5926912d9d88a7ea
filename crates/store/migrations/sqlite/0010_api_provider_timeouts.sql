-- Per-provider timeouts of API tools, in seconds. NULL means the server's defaults
-- (`API_TOOL_DEFAULT_CONNECT_TIMEOUT`, `API_TOOL_DEFAULT_READ_TIMEOUT`).
ALTER TABLE tool_api_providers ADD COLUMN connect_timeout REAL;
ALTER TABLE tool_api_providers ADD COLUMN read_timeout REAL;
