import os
import time
from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.tool import ToolInvokeMessage


class EchoTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        text = tool_parameters.get("text", "")
        mode = tool_parameters.get("mode") or "basic"
        if mode == "basic":
            yield self.create_text_message(f"echo: {text}")
            yield self.create_json_message({"text": text, "creds": sorted(self.runtime.credentials.keys()), "pid": os.getpid()})
            yield self.create_variable_message("upper", text.upper())
            yield self.create_link_message("https://example.invalid/x")
        elif mode == "storage":
            self.session.storage.set("k1", text.encode())
            yield self.create_text_message(f"storage got: {self.session.storage.get('k1').decode()}")
        elif mode == "error":
            raise ValueError(f"boom: {text}")
        elif mode == "crash":
            yield self.create_text_message("about to crash")
            time.sleep(0.2)
            os._exit(3)
        elif mode == "slow":
            time.sleep(float(text))
            yield self.create_text_message("slept")
        elif mode == "huge":
            yield self.create_text_message("x" * int(text))
        elif mode == "alloc":
            try:
                block = bytearray(int(text))
                yield self.create_text_message(f"allocated {len(block)}")
            except MemoryError:
                yield self.create_text_message("MemoryError")
        elif mode == "env":
            yield self.create_json_message({"keys": sorted(os.environ.keys())})
