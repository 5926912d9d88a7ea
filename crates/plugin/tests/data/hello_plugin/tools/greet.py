from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class GreetTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        name = tool_parameters["name"]
        if tool_parameters.get("style") == "formal":
            yield self.create_text_message(f"Good day, {name}.")
        else:
            yield self.create_text_message(f"Hi {name}!")
