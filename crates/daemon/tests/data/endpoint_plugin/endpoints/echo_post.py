import json
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class EchoPost(Endpoint):
    """Answers what it received: method, path, query, headers of interest, body and the decrypted settings."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        answer = {
            "method": r.method,
            "path": r.path,
            "rest": values.get("rest"),
            "query": r.args.to_dict(),
            "body": r.get_data(as_text=True),
            "api_key": settings.get("api_key"),
            "greeting": settings.get("greeting"),
            "hook_id": r.headers.get("Dify-Hook-Id"),
            "hook_url": r.headers.get("Dify-Hook-Url"),
            "forwarded_for": r.headers.get("X-Forwarded-For"),
            "real_ip": r.headers.get("X-Real-IP"),
            "custom": r.headers.get("X-Custom"),
        }
        return Response(
            json.dumps(answer),
            status=201,
            content_type="application/json",
            headers={"X-Echo": "yes"},
        )
