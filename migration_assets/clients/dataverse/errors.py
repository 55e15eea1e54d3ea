"""Exceptions of the Dataverse client. Messages name what failed and what to do; never a secret."""

from __future__ import annotations


class DataverseError(Exception):
    """Base class of everything the Dataverse client raises on purpose."""


class DataverseConfigError(DataverseError):
    """The client is configured wrongly (URL, credentials lists, batch sizes...)."""


class DataverseAuthError(DataverseError):
    """A token could not be obtained, or Dataverse refused it. Carries the client id, never the secret."""

    def __init__(self, client_id: str, message: str):
        super().__init__(message)
        self.client_id = client_id


class DataverseTableMissingError(DataverseError):
    """The table does not exist in the environment (yet: a custom table the schema step creates later)."""


class DataverseApiError(DataverseError):
    """Dataverse answered an error: the HTTP status and the server's `error.code`/`error.message` unchanged."""

    def __init__(self, status: int, code: str, message: str, method: str = "", url: str = ""):
        # The path only: query strings can carry filter values (emails, names) that must not reach logs.
        where = f" ({method} {url.split('?', 1)[0]})" if method else ""
        super().__init__(f"Dataverse returned HTTP {status} {code}: {message}{where}")
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = url


class DataverseUnavailableError(DataverseError):
    """Retries exhausted on connection errors, 5xx or throttling: the service did not take the request."""
