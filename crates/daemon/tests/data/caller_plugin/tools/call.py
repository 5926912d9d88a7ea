from collections.abc import Generator
from typing import Any

from dify_plugin import Tool
from dify_plugin.entities.model.llm import LLMModelConfig
from dify_plugin.entities.model.message import UserPromptMessage
from dify_plugin.entities.model.text_embedding import TextEmbeddingModelConfig
from dify_plugin.entities.tool import ToolInvokeMessage


class CallTool(Tool):
    def _invoke(self, tool_parameters: dict[str, Any]) -> Generator[ToolInvokeMessage, None, None]:
        mode = tool_parameters.get("mode", "")
        text = tool_parameters.get("text") or ""
        # Errors from the host become a text message so the test can read them exactly.
        try:
            if mode == "llm":
                chunks = self.session.model.llm.invoke(
                    model_config=LLMModelConfig(
                        provider="langgenius/openai/openai",
                        model="gpt-test",
                        mode="chat",
                        completion_params={"temperature": 0},
                    ),
                    prompt_messages=[UserPromptMessage(content=text)],
                    stream=True,
                )
                for chunk in chunks:
                    yield self.create_json_message(
                        {
                            "content": chunk.delta.message.content,
                            "index": chunk.delta.index,
                            "finish_reason": chunk.delta.finish_reason,
                            "model": chunk.model,
                        }
                    )
            elif mode == "app":
                events = self.session.app.chat.invoke(
                    app_id=text, query="hello", inputs={"k": "v"}, response_mode="streaming"
                )
                for event in events:
                    yield self.create_json_message(event)
            elif mode == "fetch_app":
                yield self.create_json_message(dict(self.session.app.fetch_app_invocation.get(text)))
            elif mode == "embedding":
                result = self.session.model.text_embedding.invoke(
                    model_config=TextEmbeddingModelConfig(provider="p", model="m"), texts=[text]
                )
                yield self.create_json_message(result.model_dump(mode="json"))
            elif mode == "upload":
                uploaded = self.session.file.upload(filename="notes.txt", content=text.encode(), mimetype="text/plain")
                yield self.create_json_message(uploaded.model_dump(mode="json"))
            else:
                yield self.create_text_message(f"unknown mode {mode}")
        except Exception as e:  # noqa: BLE001
            yield self.create_text_message(f"error: {e}")
