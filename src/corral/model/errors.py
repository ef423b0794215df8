"""The one exception type corral raises for a user's mistake or a refused request."""


class CorralError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
