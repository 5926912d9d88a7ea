from typing import Any

from dify_plugin import ToolProvider


class HelloProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        if not credentials.get("api_key"):
            raise ValueError("api_key is required")
