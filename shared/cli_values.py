"""Values from the command line and the environment that a command cannot use, refused before
any work starts: text that is not UTF-8, and for argparse's `type=` NaN, infinity, a negative or
absurd duration, a port out of range, an empty name or path. A refused flag is argparse's usage
error naming the flag (exit status 2); the value is quoted cut to MAX_QUOTED characters.

Only the standard library here: `edgecascade agent --help` imports this at start."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

#: Longest value quoted back in a usage error (an argument may be 128 KiB).
MAX_QUOTED = 40

#: Longest duration a flag takes: a week. Python's waits overflow past ~292 years
#: (OverflowError), and following a push or collecting statuses longer says nothing more.
MAX_SECONDS = 7 * 86_400.0


def text_problem(value: str, *, secret: bool = False) -> str | None:
    """Why `value` is not UTF-8 text, or None. The OS hands undecodable bytes of a variable
    or an argument over as lone surrogates (U+DC80..U+DCFF): the first one is named by
    position and byte, unless the value is a secret. A secret must also hold no control
    character: it cannot be shown to spot one, and a token with a newline (or the carriage
    return of an env file with Windows line ends) became an HTTP header quoted in a traceback."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        if secret:
            return "not valid UTF-8 text"
        offset = len(value[: exc.start].encode("utf-8", "surrogateescape"))
        try:
            byte = value[exc.start].encode("utf-8", "surrogateescape")[0]
        except UnicodeEncodeError:  # a surrogate that no OS byte decodes to
            return "not valid UTF-8 text"
        return f"not valid UTF-8 text (byte {offset} is 0x{byte:02x})"
    if secret and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "holds a control character (newline, carriage return, ...)"
    return None


def quoted(text: str) -> str:
    """`text` as a usage error quotes it: repr, cut to MAX_QUOTED characters."""
    shown = repr(text)
    return shown if len(shown) <= MAX_QUOTED else shown[:MAX_QUOTED] + "..."


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {quoted(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a finite number")
    return value


def finite(minimum: float = -math.inf, maximum: float = math.inf) -> Callable[[str], float]:
    """A parser of a finite number within [minimum, maximum]."""

    wanted = f"at least {minimum:g}" if maximum == math.inf else f"{minimum:g} to {maximum:g}"

    def parse(text: str) -> float:
        value = _number(text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{quoted(text)} is out of range; give {wanted}")
        return value

    return parse


def seconds(text: str) -> float:
    """A duration in seconds: finite, 0 to MAX_SECONDS."""
    return finite(0.0, MAX_SECONDS)(text)


def percent(text: str) -> float:
    """A share in percent: more than 0 (0 reaches no device), at most 100."""
    value = _number(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(
            f"{quoted(text)} percent is out of range; give more than 0, at most 100"
        )
    return value


def whole(minimum: int, maximum: int) -> Callable[[str], int]:
    """A parser of a whole number within [minimum, maximum]."""

    def parse(text: str) -> int:
        stripped = text.strip()
        digits = stripped.removeprefix("-").removeprefix("+")
        if not (digits.isascii() and digits.isdigit()):  # not 1e3, 2.5 or nan
            raise argparse.ArgumentTypeError(f"not a whole number: {quoted(text)}")
        # No int() of 4,000 digits (Python refuses past 4,300, and slowly before).
        value = int(stripped) if len(digits) <= 18 else None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{quoted(text)} is out of range; give {minimum} to {maximum}")
        return value

    return parse


#: A TCP port; 0 = any free one.
port = whole(0, 65_535)


def name(text: str) -> str:
    """A non-empty UTF-8 name (a model, a host)."""
    problem = "empty; give a name" if not text else text_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


#: Longest file name and path Linux file systems take (NAME_MAX, PATH_MAX): past them every
#: look-up fails with ENAMETOOLONG, which Path.is_dir() and is_file() raise.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095


def path_problem(text: str) -> str | None:
    """Why `text` cannot name a file or folder, or None: empty (that would be the current
    folder, silently) or too long for any file system."""
    if not text:
        return "empty path; give a file or folder name"
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_PATH_BYTES:
        return f"path of {size} bytes; a path is at most {MAX_PATH_BYTES}"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in text.split("/")):
        return f"a name in the path is longer than {MAX_NAME_BYTES} bytes"
    return None


def path(text: str) -> Path:
    """A path that can name a file or folder (see path_problem)."""
    problem = path_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)
