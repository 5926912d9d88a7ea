from dify_plugin import ModelProvider
from dify_plugin.errors.model import CredentialsValidateFailedError


class FakeLLMProvider(ModelProvider):
    def validate_provider_credentials(self, credentials: dict) -> None:
        if credentials.get("api_key") != "good":
            raise CredentialsValidateFailedError("api_key must be `good`")
