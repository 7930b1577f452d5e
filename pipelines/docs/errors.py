from __future__ import annotations


class DocumentError(ValueError):
    """A document that cannot be used, with a message for the person who uploaded it."""
