"""File names as one printable line.

A name on Linux may hold bytes that are not UTF-8 (Python keeps them as lone surrogates,
which printing to a UTF-8 terminal, writing UTF-8 JSON or drawing with matplotlib refuse)
and control characters (a newline would split a result line in two)."""

import os


def printable(name):
    """``name`` with undecodable bytes as ``\\xff`` and control characters as ``\\n``,
    ``\\x1b``..., the rest as it is."""
    text = os.fsencode(str(name)).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
