"""What can go wrong with a request, in the API's own words. The service layer raises these;
api/problems.py turns each into one HTTP status and an RFC 9457 problem body."""


class ApiError(Exception):
    """`detail` is shown to the client as it is: it names the problem and what is allowed."""

    def __init__(self, detail: str, *, field: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.retry_after_s = retry_after_s


class InvalidInput(ApiError):
    """A field's value is not acceptable; `field` names it."""


class UnsupportedImage(ApiError):
    """The file is not an image in an accepted format."""


class UploadTooLarge(ApiError):
    pass


class NotFound(ApiError):
    """No such job, or not this client's: the two are not told apart."""


class NotFinished(ApiError):
    """The job has no result (yet, or ever)."""


class AlreadyFinished(ApiError):
    """The job has ended (completed or failed): it cannot be cancelled."""


class RequestInFlight(ApiError):
    """An earlier request with the same Idempotency-Key is still being handled."""


class Unauthenticated(ApiError):
    pass


class Forbidden(ApiError):
    pass


class RateLimited(ApiError):
    pass


class QueueFull(ApiError):
    pass


class Unavailable(ApiError):
    """A service the request needs (broker, object store) cannot be reached."""
