"""Domain errors. Each carries the HTTP status it maps to, so handlers map errors to responses in one place."""


class LiteserveError(Exception):
    """Base class of every error raised on purpose by liteserve."""

    status: int = 500
    kind: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LiteserveError):
    """The client sent something malformed (400)."""

    status = 400
    kind = "bad_request"


class NotFound(LiteserveError):
    """Unknown route, model or version (404)."""

    status = 404
    kind = "not_found"


class MethodNotAllowed(LiteserveError):
    """Known path, wrong HTTP method (405); `allow` lists the methods the path takes (the `Allow` header)."""

    status = 405
    kind = "method_not_allowed"

    def __init__(self, message: str, allow: list[str] | None = None) -> None:
        super().__init__(message)
        self.allow = allow or []


class PayloadTooLarge(LiteserveError):
    """Body or instance count over the configured limit (413)."""

    status = 413
    kind = "too_large"


class UnsupportedMediaType(LiteserveError):
    """Body is not JSON, or is compressed in an encoding the server does not read (415)."""

    status = 415
    kind = "unsupported_media_type"


class ModelUnavailable(LiteserveError):
    """The model could not be loaded or run (503); never caused by the client."""

    status = 503
    kind = "model_unavailable"


class InternalError(LiteserveError):
    """A bug, never the client's fault (500): the trace goes to the log, the client gets only this message."""

    status = 500
    kind = "internal"
