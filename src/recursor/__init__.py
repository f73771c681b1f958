from recursor.errors import RecursorError

__all__ = ["RecursorError"]
