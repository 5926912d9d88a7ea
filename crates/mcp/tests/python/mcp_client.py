"""Drives an MCP server over streamable HTTP with the Python `mcp` SDK's client and prints what it saw as JSON.

Usage: mcp_client.py URL MODE   (MODE: auto | legacy)
"""

import json
import sys

import anyio
from mcp import Client


async def main(url: str, mode: str) -> None:
    async with Client(url, mode=mode) as client:
        tools = await client.list_tools()
        echo = await client.call_tool("echo", {"text": "hi"})
        rich = await client.call_tool("rich", {})
        fail = await client.call_tool("fail", {})
        missing = await client.call_tool("echo", {})
        out = {
            "protocol_version": client.protocol_version,
            "server_name": client.server_info.name if client.server_info else None,
            "tools": [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools.tools],
            "echo": echo.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "rich": rich.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "fail": fail.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "missing": missing.model_dump(by_alias=True, exclude_none=True, mode="json"),
        }
        print(json.dumps(out))


anyio.run(main, sys.argv[1], sys.argv[2])
