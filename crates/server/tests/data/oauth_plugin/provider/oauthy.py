import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from werkzeug import Request

from dify_plugin import ToolProvider
from dify_plugin.entities.oauth import ToolOAuthCredentials
from dify_plugin.errors.tool import ToolProviderOAuthError

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _token(server_url: str, form: dict[str, str]) -> ToolOAuthCredentials:
    body = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(f"{server_url}/token", data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with _OPENER.open(request, timeout=10) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise ToolProviderOAuthError(f"token endpoint answered {e.code}: {e.read().decode()}") from e
    return ToolOAuthCredentials(
        credentials={
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token", ""),
            "server_url": server_url,
        },
        expires_at=int(time.time()) + int(answer["expires_in"]),
    )


class OAuthyProvider(ToolProvider):
    def _validate_credentials(self, credentials: dict[str, Any]) -> None:
        pass

    def _oauth_get_authorization_url(self, redirect_uri: str, system_credentials: Mapping[str, Any]) -> str:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": system_credentials["client_id"],
                "redirect_uri": redirect_uri,
                "state": "plugin-state",
            }
        )
        return f"{system_credentials['server_url']}/authorize?{query}"

    def _oauth_get_credentials(
        self, redirect_uri: str, system_credentials: Mapping[str, Any], request: Request
    ) -> ToolOAuthCredentials:
        if not request.path.startswith("/console/api/oauth/plugin/acme/oauthy/oauthy/tool/callback"):
            raise ToolProviderOAuthError(f"unexpected callback path {request.path}")
        if request.args.get("state") != "plugin-state":
            raise ToolProviderOAuthError("state mismatch")
        code = request.args.get("code")
        if not code:
            raise ToolProviderOAuthError(f"no code in the callback: {request.args.get('error')}")
        return _token(
            system_credentials["server_url"],
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": system_credentials["client_id"],
                "client_secret": system_credentials["client_secret"],
            },
        )

    def _oauth_refresh_credentials(
        self, redirect_uri: str, system_credentials: Mapping[str, Any], credentials: Mapping[str, Any]
    ) -> ToolOAuthCredentials:
        return _token(
            system_credentials["server_url"],
            {
                "grant_type": "refresh_token",
                "refresh_token": credentials["refresh_token"],
                "client_id": system_credentials["client_id"],
                "client_secret": system_credentials["client_secret"],
            },
        )
