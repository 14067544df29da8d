"""User-facing errors: one line that says what is wrong and how to fix it."""


class SpadeError(Exception):
    """An error caused by user input (a file, a name, a value).

    The command line prints ``str(error)`` on one line and exits non-zero, without a
    traceback; the Python API lets it propagate like any exception.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`SpadeError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise SpadeError(message)
