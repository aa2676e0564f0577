"""One progress reporter for the commands that run more than a few seconds (demo, quantize, verify,
gradcheck).

On a terminal it keeps ONE line up to date (carriage return, no newline): what is done, the rate and
the time left, and clears it at the end, so that the command's own output (the demo's stages, a
table) is all that stays on the screen::

    training  640/2000 [=========>..................]  32%  38.1 steps/s  ETA 0:36  loss 0.4127

When the stream is not a terminal (a log file, a pipe, CI) carriage returns would pile up, so it
writes plain lines instead, and only a few: each time another 10% of the work is done, or 10 seconds
after the last line, whichever comes first::

    training  200/2000 (10%)  5.2s elapsed, 38.5 steps/s, ETA 0:47  loss 0.6620

Progress goes to stderr by default, so ``refdet demo > log.txt`` keeps the log clean and still shows the
live line. Without a total (``total=None``: the amount of work is not known in advance, as in
``refdet verify``) the line shows the elapsed time and the latest status instead of a bar and an ETA.

    with Progress(2000, "training", unit="steps") as bar:
        for step in range(2000):
            ...
            bar.update(status=f"loss {loss:.4f}")
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["Progress", "is_terminal", "format_duration"]


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal that understands a carriage return.

    False for files, pipes, objects without ``isatty`` and ``TERM=dumb`` (Emacs shells and the like).
    """
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"`` (rounded to whole seconds); NaN or inf -> ``"?"``."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A progress line on a terminal, sparse plain lines otherwise (see the module docstring).

    Parameters
    ----------
    total : int or None
        Units of work (steps, cases); ``None`` when unknown.
    label : str
        Printed first on every line (e.g. ``"training"``).
    unit : str
        What is counted, plural, for the rate (``"steps"`` -> ``"38.1 steps/s"``, or ``"2.50 s/step"``
        below one per second).
    stream : file-like, optional
        Where the progress goes (default ``sys.stderr``, looked up when the reporter is created).
    tty : bool, optional
        Force the terminal (True) or plain-line (False) mode; default: :func:`is_terminal` of ``stream``.
    every_fraction : float
        Plain mode: a line each time another ``every_fraction`` of ``total`` is done (default 10%).
    every_seconds : float
        Plain mode: a line when this many seconds passed since the last one (default 10 s).
    refresh : float
        Terminal mode: redraw at most this often, in seconds (the last unit is always drawn).
    clock : callable
        Returns seconds (default ``time.monotonic``); tests pass a fake one.
    width : int, optional
        Terminal mode: the line is cut to ``width - 1`` characters (default: the terminal's width).
    enabled : bool
        False: write nothing at all (``--quiet``).
    """

    def __init__(self, total: Optional[int] = None, label: str = "", *, unit: str = "it",
                 stream: Optional[TextIO] = None, tty: Optional[bool] = None, every_fraction: float = 0.1,
                 every_seconds: float = 10.0, refresh: float = 0.1, clock: Callable[[], float] = time.monotonic,
                 width: Optional[int] = None, enabled: bool = True):
        if total is not None and (isinstance(total, bool) or int(total) != total or total < 0):
            raise ValueError(f"`total` must be an integer >= 0 or None; got {total!r}")
        if not 0 < every_fraction <= 1:
            raise ValueError(f"`every_fraction` must be in (0, 1]; got {every_fraction!r}")
        self.total = None if total is None else int(total)
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = is_terminal(self.stream) if tty is None else bool(tty)
        self.every_fraction = float(every_fraction)
        self.every_seconds = float(every_seconds)
        self.refresh = float(refresh)
        self.clock = clock
        self.width = width
        self.enabled = enabled
        self.done = 0
        self.status_text = ""
        self.t0 = clock()
        self._last_draw = None        # terminal: time of the last redraw
        self._shown = 0               # terminal: length of the line on the screen now
        self._last_line_t = self.t0   # plain: time of the last line
        self._next_mark = self._mark_after(0)
        self._unreported = False      # plain: done or status changed since the last line
        self._lines = 0               # plain: lines written
        self.closed = False

    # -- what the caller does -----------------------------------------------------------------------
    def update(self, n: int = 1, *, status: Optional[str] = None) -> None:
        """``n`` more units done; ``status`` (optional) replaces the text shown after the numbers."""
        self.done += int(n)
        if status is not None:
            self.status_text = status
        self._report()

    def status(self, text: str) -> None:
        """New status text without progress (e.g. which check runs now)."""
        self.status_text = text
        self._report()

    def __call__(self, text: str) -> None:
        """``progress(text)``: the callback form :mod:`refdet.verify` passes down (a status update)."""
        self.status(text)

    def write(self, line: str, file: Optional[TextIO] = None) -> None:
        """Print ``line`` (to ``file``, default stdout) without breaking the progress line: on a terminal
        the line is cleared first and drawn again below the printed text."""
        shown = self.tty and self._shown and self.enabled
        if shown:
            self._clear()
        out = sys.stdout if file is None else file
        out.write(line + "\n")
        out.flush()
        if shown:
            self._draw(self.clock())

    def close(self) -> None:
        """End: on a terminal clear the line (the command prints its own summary); in plain mode write
        the last state if it has not been written yet. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        if self.tty and self._shown:
            self._clear()
        elif not self.tty and self._unreported:
            self._plain(self.clock())

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- numbers ------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return max(0.0, self.clock() - self.t0)

    def rate(self) -> Optional[float]:
        """Units per second so far (None before the first unit or before any time has passed)."""
        e = self.elapsed()
        return self.done / e if self.done and e > 0 else None

    def eta(self) -> Optional[float]:
        """Seconds left at the mean rate so far (None when unknown)."""
        r = self.rate()
        if self.total is None or r is None:
            return None
        return max(0, self.total - self.done) / r

    def _mark_after(self, done):
        """Plain mode: the unit count at which the next fraction line is due."""
        if not self.total:
            return None
        step = max(1, int(round(self.every_fraction * self.total)))
        return (done // step + 1) * step

    # -- output -------------------------------------------------------------------------------------
    def _rate_text(self):
        r = self.rate()
        if r is None:
            return ""
        if r >= 1:
            return f"{r:.1f} {self.unit}/s"
        one = self.unit[:-1] if self.unit.endswith("s") and len(self.unit) > 2 else self.unit   # "s/step"
        return f"{1 / r:.2f} s/{one}"

    def terminal_line(self) -> str:
        """The text of the updating line (without the carriage return)."""
        parts = [self.label] if self.label else []
        if self.total is not None:
            frac = self.done / self.total if self.total else 1.0
            n = 24
            filled = min(n, int(frac * n))
            bar = "=" * filled + (">" if filled < n else "") + "." * max(0, n - filled - 1)
            w = len(str(self.total))
            parts.append(f"{self.done:>{w}}/{self.total} [{bar}] {100 * frac:3.0f}%")
        else:
            parts.append(f"{self.done} {self.unit}" if self.done else "")
        rate = self._rate_text()
        if rate:
            parts.append(rate)
        eta = self.eta()
        if eta is not None and self.done < (self.total or 0):
            parts.append(f"ETA {format_duration(eta)}")
        else:
            parts.append(f"{format_duration(self.elapsed())} elapsed")
        if self.status_text:
            parts.append(self.status_text)
        return "  ".join(p for p in parts if p)

    def plain_line(self) -> str:
        """The text of one plain progress line."""
        parts = [self.label] if self.label else []
        if self.total is not None:
            frac = self.done / self.total if self.total else 1.0
            parts.append(f"{self.done:>{len(str(self.total))}}/{self.total} ({100 * frac:3.0f}%)")
        elif self.done:
            parts.append(f"{self.done} {self.unit}")
        stats = f"{self.elapsed():.1f}s elapsed"
        rate = self._rate_text()
        if rate:
            stats += f", {rate}"
        eta = self.eta()
        if eta is not None and self.done < (self.total or 0):
            stats += f", ETA {format_duration(eta)}"
        parts.append(stats)
        if self.status_text:
            parts.append(self.status_text)
        return "  ".join(parts)

    def _columns(self):
        if self.width is not None:
            return self.width
        return shutil.get_terminal_size((100, 24)).columns

    def _clear(self):
        self.stream.write("\r" + " " * self._shown + "\r")
        self.stream.flush()
        self._shown = 0

    def _draw(self, now):
        line = self.terminal_line()[:max(10, self._columns() - 1)]
        # pad with spaces over the rest of a longer previous line, then return to the line's end
        self.stream.write("\r" + line + " " * max(0, self._shown - len(line)))
        self.stream.flush()
        self._shown = len(line)
        self._last_draw = now

    def _report(self):
        if not self.enabled or self.closed:
            return
        now = self.clock()
        if self.tty:
            last = self.total is not None and self.done >= self.total
            if self._last_draw is None or last or now - self._last_draw >= self.refresh:
                self._draw(now)
            return
        self._unreported = True
        # the first news of a job of unknown size, then every `every_seconds`, or every `every_fraction`
        due = now - self._last_line_t >= self.every_seconds or (self.total is None and not self._lines)
        if self._next_mark is not None and self.done >= self._next_mark:
            due = True
            self._next_mark = self._mark_after(self.done)
        if due:
            self._plain(now)

    def _plain(self, now):
        self.stream.write(self.plain_line() + "\n")
        self.stream.flush()
        self._last_line_t = now
        self._lines += 1
        self._unreported = False
