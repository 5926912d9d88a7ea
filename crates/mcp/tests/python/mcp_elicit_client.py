"""Calls toolplane's conformance-fixture tools that ask the client (elicitation, sampling) with the Python `mcp`
SDK's client, answering as a user and an LLM would, and prints what it saw as JSON.

Usage: mcp_elicit_client.py URL MODE CAPABLE   (MODE: auto | legacy; CAPABLE: yes | no — whether the client
declares elicitation and sampling)
"""

import json
import sys

import anyio
from mcp import Client
from mcp import types


async def main(url: str, mode: str, capable: bool) -> None:
    seen = {"elicitations": [], "samplings": []}

    async def on_elicit(context, params):
        seen["elicitations"].append(params.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})

    async def on_sample(context, params):
        seen["samplings"].append(params.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="forty-two"),
            model="test-model",
            stop_reason="endTurn",
        )

    callbacks = {"elicitation_callback": on_elicit, "sampling_callback": on_sample} if capable else {}
    out = {}
    async with Client(url, mode=mode, **callbacks) as client:
        out["protocol_version"] = client.protocol_version
        for name, args in [
            ("test_elicitation", {"message": "Who are you?"}),
            ("test_sampling", {"prompt": "What is six times seven?"}),
        ]:
            try:
                result = await client.call_tool(name, args)
                out[name] = result.model_dump(by_alias=True, exclude_none=True, mode="json")
            except Exception as e:  # the server's JSON-RPC error
                out[name] = {"error": str(e), "code": getattr(getattr(e, "error", None), "code", None)}
    out.update(seen)
    print(json.dumps(out))


anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] == "yes")
