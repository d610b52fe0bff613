"""Cookie sessions over the shared pool, and the logins that keep them signed in.

A spider has one ``Session`` per name, each with its own cookie jar; a login
hook signs a session in before the crawl and again when the site logs it out.
"""

from ._forms import FormError as FormError
from ._session import LoginFailed as LoginFailed
from ._session import Session as Session
from ._session import SharedSessionError as SharedSessionError

__all__ = ["FormError", "LoginFailed", "Session", "SharedSessionError"]
