from collections.abc import Generator, Mapping

from dify_plugin import LargeLanguageModel
from dify_plugin.core.session_context import get_current_session
from dify_plugin.entities.model.llm import LLMResult, LLMResultChunk, LLMResultChunkDelta
from dify_plugin.entities.model.message import AssistantPromptMessage, PromptMessage, PromptMessageTool
from dify_plugin.errors.model import CredentialsValidateFailedError, InvokeError


class FakeChatModel(LargeLanguageModel):
    def _invoke(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        model_parameters: dict,
        tools: list[PromptMessageTool] | None = None,
        stop: list[str] | None = None,
        stream: bool = True,
        user: str | None = None,
    ) -> Generator[LLMResultChunk, None, None] | LLMResult:
        text = str(prompt_messages[-1].content)
        if text == "storage":
            # Model sessions may not call back into the host: the daemon must refuse.
            try:
                get_current_session().storage.set("k", b"v")
                reply = "storage worked"
            except Exception as e:  # noqa: BLE001
                reply = f"refused: {e}"
        else:
            reply = f"echo {text} at {model_parameters.get('temperature')}"
        words = reply.split(" ")

        def chunks() -> Generator[LLMResultChunk, None, None]:
            for i, word in enumerate(words):
                yield LLMResultChunk(
                    model=model,
                    delta=LLMResultChunkDelta(
                        index=i, message=AssistantPromptMessage(content=word if i == 0 else f" {word}")
                    ),
                )
            yield LLMResultChunk(
                model=model,
                delta=LLMResultChunkDelta(
                    index=len(words),
                    message=AssistantPromptMessage(content=""),
                    usage=self._calc_response_usage(model, credentials, len(text.split()), len(words)),
                    finish_reason="stop",
                ),
            )

        return chunks()

    def get_num_tokens(
        self,
        model: str,
        credentials: dict,
        prompt_messages: list[PromptMessage],
        tools: list[PromptMessageTool] | None = None,
    ) -> int:
        return sum(len(str(m.content).split()) for m in prompt_messages)

    def validate_credentials(self, model: str, credentials: Mapping) -> None:
        if credentials.get("api_key") != "good":
            raise CredentialsValidateFailedError("api_key must be `good`")

    @property
    def _invoke_error_mapping(self) -> dict[type[InvokeError], list[type[Exception]]]:
        return {}
