"""Logging set-up: readable lines for people, JSON lines for machines.

Under --log-json every line on stderr is one JSON object: log records, the CLI's fatal `error:`
line (print_error), uncaught exceptions, and what native runtimes write straight to file
descriptor 2 (LiteRT's C++ start-up line, ONNX Runtime warnings), which capture_native_stderr()
reads through a pipe and logs line by line. Child processes inherit the choice through
EDGECASCADE_LOG_JSON."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType

#: Set to 1 by --log-json for child processes (uvicorn workers, the update check); also a switch.
LOG_JSON_ENV = "EDGECASCADE_LOG_JSON"

native_log = logging.getLogger("edgecascade.native")

# "INFO: ...", "WARNING: ..." (TFLite), "W0000 00:00:... file.cc:12] ..." (absl/glog), "[W:onnxruntime:...".
_NATIVE_LEVEL = re.compile(r"^(?:(INFO|WARNING|ERROR|FATAL):|([IWEF])\d{4} |\[([IWEF]):)")
_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record, not at set-up (tests and
    embedding applications replace it; a handler holding a closed stream loses log lines)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def json_lines_enabled() -> bool:
    """True once JSON lines were chosen in this process or a parent (EDGECASCADE_LOG_JSON=1)."""
    return os.environ.get(LOG_JSON_ENV, "") in ("1", "true", "yes")


def configure_logging(
    level: str = "INFO", *, json_lines: bool | None = None, capture_native: bool = False
) -> None:
    """Install one stderr handler on the root logger. json_lines=None follows EDGECASCADE_LOG_JSON
    (what a parent chose). With capture_native, native output on fd 2 becomes JSON lines too."""
    if json_lines is None:
        json_lines = json_lines_enabled()
    handler = _StderrHandler()
    handler.setFormatter(
        JsonLineFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not json_lines:
        os.environ.pop(LOG_JSON_ENV, None)
    else:
        os.environ[LOG_JSON_ENV] = "1"
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
        if capture_native:
            capture_native_stderr()


def print_error(message: str) -> None:
    """A command's error for a person: `error: ...` on stderr, or one JSON line under --log-json."""
    if json_lines_enabled():
        logging.getLogger("edgecascade").error("error: %s", message)
    else:
        print(f"error: {message}", file=sys.stderr)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """parser.parse_args(argv); under --log-json (or EDGECASCADE_LOG_JSON=1) a usage error is
    one JSON line instead of argparse's plain `usage: ... error: ...` lines."""
    if "--log-json" not in argv and not json_lines_enabled():
        return parser.parse_args(argv)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(argv)
    except SystemExit:
        text = " ".join(line.strip() for line in captured.getvalue().splitlines() if line.strip())
        if text:
            record = logging.LogRecord("edgecascade", logging.ERROR, __file__, 0, "%s", (text,), None)
            sys.stderr.write(JsonLineFormatter().format(record) + "\n")
        raise


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("edgecascade").critical("uncaught %s", kind.__name__, exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    logging.getLogger("edgecascade").critical(
        "uncaught %s in thread %s",
        args.exc_type.__name__,
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


class _NativeStderr:
    """fd 2 -> pipe -> this thread -> one log record per line. Python's own sys.stderr keeps
    writing to the original stderr (a duplicate of fd 2), so log lines never loop back."""

    def __init__(self) -> None:
        self.saved_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        sys.stderr.flush()
        sys.stderr = io.TextIOWrapper(
            os.fdopen(os.dup(self.saved_fd), "wb", buffering=0),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._thread = threading.Thread(target=self._pump, name="native-stderr", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def _pump(self) -> None:
        pending = b""
        while True:
            chunk = self._reader.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
            if len(pending) > 65536:  # a line without end: bounded memory, logged in pieces
                self._emit(pending)
                pending = b""
        if pending:
            self._emit(pending)

    @staticmethod
    def _emit(raw: bytes) -> None:
        text = raw.decode("utf-8", errors="backslashreplace").rstrip("\r")
        if not text.strip():
            return
        if text.startswith("{"):
            try:
                json.loads(text)
            except (ValueError, RecursionError):  # not JSON after all (or absurdly nested)
                pass
            else:
                sys.stderr.write(text + "\n")  # already a JSON line (a child process's log)
                return
        match = _NATIVE_LEVEL.match(text)
        letter = next((g for g in match.groups() if g), "W")[0] if match else "W"
        native_log.log(_LEVELS.get(letter, logging.WARNING), "%s", text)

    def stop(self) -> None:
        # Point fd 2 back at the real stderr: the pipe's last writer closes, the thread drains it.
        try:
            os.dup2(self.saved_fd, 2)
        except OSError:
            return
        self._thread.join(timeout=2.0)


_native: _NativeStderr | None = None


def capture_native_stderr() -> None:
    """Start the fd-2 capture once per process (only under --log-json)."""
    global _native
    if _native is None:
        _native = _NativeStderr()
