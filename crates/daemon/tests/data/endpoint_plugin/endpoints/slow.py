import time
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class Slow(Endpoint):
    """Sleeps before answering anything: the daemon's execution timeout must answer for it."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        time.sleep(float(r.args.get("seconds", "1")))
        return Response("late", status=200, content_type="text/plain")
