"""Text as users give it: what a daemon can store, pass to a process and show again.

Every text value of a job ends up as UTF-8 bytes somewhere (the store, a process's
arguments and environment, JSON answers), and a NUL ends a C string early. Python's `str`
can hold a lone surrogate (JSON's "\\udfff", or an undecodable byte in a command-line
argument), which no UTF-8 encoder accepts: such text is refused where it comes in, and
messages that quote a user's text show it with `printable`.
"""

from __future__ import annotations


def text_problem(text: str) -> str | None:
    """Why `text` cannot be used as a job's text (a NUL or a lone surrogate), or None."""
    if "\0" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"is not valid Unicode text (a lone surrogate at character {error.start})"
    return None


def printable(text: str) -> str:
    """`text` with every character UTF-8 cannot encode written as a `\\udfff` escape:
    safe in a message, a log line or a JSON answer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
