import time
from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class Stream(Endpoint):
    """A generator body: the daemon must stream the chunks as they come."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        count = int(r.args.get("count", "3"))
        delay = float(r.args.get("delay", "0"))

        def chunks():
            for i in range(count):
                yield f"chunk {i}\n"
                time.sleep(delay)

        return Response(chunks(), status=200, content_type="text/plain")
