"""An MCP server (Python `mcp` SDK) whose tool list grows at runtime, for toolplane's list_changed tests.

Usage: growing_server.py TRANSPORT [PORT]   (TRANSPORT: stdio or streamable-http)
- `grow(name)` adds a tool called NAME and announces `notifications/tools/list_changed` (on the session's GET
  stream in the session era, to `subscriptions/listen` in the 2026-07-28 era);
"""

import sys

from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("growing-server")


@mcp.tool(description="Echo the text back")
def echo(text: str) -> str:
    return text


@mcp.tool(description="Adds a tool named NAME and announces the change")
async def grow(name: str, ctx: Context) -> str:
    def added(text: str) -> str:
        return f"{name} says {text}"

    mcp.add_tool(added, name=name, description=f"added at runtime as {name}")
    session = None
    try:
        session = ctx.session
    except Exception:
        pass
    if session is not None and hasattr(session, "send_tool_list_changed"):
        await session.send_tool_list_changed()
    await ctx.notify_tools_changed()
    return f"added {name}"


if __name__ == "__main__":
    transport = sys.argv[1]
    if transport == "stdio":
        mcp.run("stdio")
    else:
        mcp.run(transport, host="127.0.0.1", port=int(sys.argv[2]))
