"""An MCP server for toolplane's tests, built on the Python `mcp` SDK.

Usage: mcp_server.py TRANSPORT [PORT] [MARKER_DIR]
TRANSPORT is stdio, sse or streamable-http. Cancelled calls of `slow` write MARKER_DIR/cancelled-<tag>.
"""

import base64
import os
import sys
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ListToolsResult
from pydantic import BaseModel

PAGE_SIZE = 3
MARKERS = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("MARKER_DIR", "/tmp")


class PagedServer(MCPServer):
    """Lists tools three per page so clients must follow nextCursor."""

    async def _handle_list_tools(self, ctx, params):
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + PAGE_SIZE
        next_cursor = str(end) if end < len(tools) else None
        return ListToolsResult(tools=tools[start:end], next_cursor=next_cursor, cache_scope="private", ttl_ms=0)


mcp = PagedServer("py-test-server", instructions="test server")


class Sum(BaseModel):
    sum: int
    note: str


class Item(BaseModel):
    name: str
    qty: int = 1


@mcp.tool(description="Echo the text back")
def echo(text: str) -> str:
    return text


@mcp.tool(description="Add two integers (structured output)")
def add(a: int, b: int) -> Sum:
    return Sum(sum=a + b, note="added")


@mcp.tool(description="Returns JSON as text")
def json_text(kind: Literal["object", "list", "scalar"] = "object") -> CallToolResult:
    text = {"object": '{"a": 1, "b": [1, 2]}', "list": '[{"x": 1}, {"x": 2}]', "scalar": "[1, 2, 3]"}[kind]
    return CallToolResult.model_validate({"content": [{"type": "text", "text": text}]})


@mcp.tool(description="Every content type")
def media() -> CallToolResult:
    png = base64.b64encode(b"\x89PNG fake").decode()
    wav = base64.b64encode(b"RIFF fake").decode()
    blob = base64.b64encode(b"\x00\x01\x02").decode()
    return CallToolResult.model_validate(
        {
            "content": [
                {"type": "image", "data": png, "mimeType": "image/png"},
                {"type": "audio", "data": wav, "mimeType": "audio/wav"},
                {"type": "resource", "resource": {"uri": "test://text", "mimeType": "text/plain", "text": "embedded text"}},
                {"type": "resource", "resource": {"uri": "test://blob", "blob": blob}},
                {"type": "resource_link", "uri": "https://example.com/report.pdf", "name": "report.pdf"},
            ]
        }
    )


@mcp.tool(description="Fails on purpose")
def fail(reason: str) -> str:
    raise ToolError(f"failed because {reason}")


@mcp.tool(description="Sleeps; records cancellation")
async def slow(seconds: float, tag: str) -> str:
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        with open(os.path.join(MARKERS, f"cancelled-{tag}"), "w") as f:
            f.write("cancelled")
        raise
    return "done"


@mcp.tool(description="Complex parameters")
def complex_args(items: list[Item], options: dict[str, Any], choice: int | str, flag: bool = False) -> str:
    return f"{len(items)} items, options={sorted(options)}, choice={choice!r}, flag={flag}"


@mcp.tool(description="Announces a tools list change")
async def change_tools(ctx: Context) -> str:
    await ctx.notify_tools_changed()
    return "changed"


if __name__ == "__main__":
    transport = sys.argv[1]
    if transport == "stdio":
        mcp.run("stdio")
    else:
        port = int(sys.argv[2])
        mcp.run(transport, host="127.0.0.1", port=port)
