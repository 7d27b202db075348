"""One-line errors for a mistyped name (method, preset, protocol, zoo, format), with the closest known ones."""

from __future__ import annotations

import difflib


def unknown_name(kind: str, name: str, known) -> str:
    """'unknown method 'git-rebasn' (did you mean 'git-rebasin'?; known: ...)': one line for a typo."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {kind} {name!r} ({hint}known: {', '.join(known)})"
