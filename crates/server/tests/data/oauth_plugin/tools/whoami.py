import json
import urllib.error
import urllib.request
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WhoamiTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        credentials = self.runtime.credentials
        request = urllib.request.Request(f"{credentials['server_url']}/me")
        request.add_header("Authorization", f"Bearer {credentials['access_token']}")
        try:
            with _OPENER.open(request, timeout=10) as response:
                me = json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise ValueError(f"resource server answered {e.code}") from e
        yield self.create_text_message(f"user {me['user']} via {credentials['access_token']}")
