"""Text that came from devices, made safe to print on the fleet manager's terminal.

Statuses, presence, reasons, model names and the ingester's dead-letter reasons are written by
devices, and a device can be buggy, compromised or an impostor. Printed raw, an ANSI escape
(`\\x1b[2J`) clears the screen or recolours a row, a carriage return or backspaces overwrite
what came before, and a bidi override (U+202E) shows text reversed, so a failed device could be
made to look active. Every fleet command prints such text through `shown()`, which spells each
non-printable character (C0 and C1 controls, DEL, format characters such as bidi overrides and
zero-width ones, line and paragraph separators, unassigned code points, spaces other than the
ASCII one) as a visible escape, as Python's repr does, and cuts it to a length."""

from __future__ import annotations

import sys

#: What a cut cell ends with (ASCII: every terminal encoding has it).
CUT = "..."
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: object, limit: int | None = None, encoding: str | None = None) -> str:
    """`value` as text safe to print: non-printable characters escaped (`\\x1b`, `\\r`,
    `\\u202e`), and so are characters the output's encoding (`encoding`, default: stdout's)
    cannot write, which would otherwise end the command with UnicodeEncodeError. With
    `limit`, at most that many characters of the text are kept, then CUT."""
    text = value if isinstance(value, str) else str(value)
    cut = False
    if limit is not None and len(text) > limit:
        text, cut = text[: max(0, limit - len(CUT))], True
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if not text.isascii():
        out = encoding or getattr(sys.stdout, "encoding", None) or "utf-8"
        try:
            text.encode(out)
        except UnicodeEncodeError:
            text = "".join(c if _encodable(c, out) else _escape(c) for c in text)
        except LookupError:  # an encoding name Python does not know: plain ASCII is safe
            text = "".join(c if c.isascii() else _escape(c) for c in text)
    return text + CUT if cut else text


def _encodable(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True
