from collections.abc import Mapping

from werkzeug import Request, Response

from dify_plugin import Endpoint


class Fail(Endpoint):
    """Returns something that is not a Response: the SDK fails the whole session (an `error` event), which the
    daemon must turn into a 500 naming the failure."""

    def _invoke(self, r: Request, values: Mapping, settings: Mapping) -> Response:
        return "not a response"  # type: ignore[return-value]
