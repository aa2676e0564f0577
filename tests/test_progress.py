"""refdet.apps.progress: one updating line on a terminal, sparse plain lines otherwise."""
import io

import pytest

from refdet.apps.progress import Progress, format_duration, is_terminal


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


class Clock:
    """A fake clock: each call returns the current time; ``tick`` moves it."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def tick(self, dt):
        self.t += dt


def _visible(text):
    """What a terminal shows on the current line: the text after the last carriage return."""
    return text.split("\n")[-1].split("\r")[-1]


def test_terminal_mode_one_updating_line_cleared_at_the_end():
    out, clock = FakeTTY(), Clock()
    with Progress(2000, "training", unit="steps", stream=out, clock=clock, width=200) as bar:
        assert bar.tty
        for i in range(2000):
            clock.tick(0.01)                                  # 100 steps/s
            bar.update(status=f"loss {1 / (i + 1):.3f}")
            if i == 499:
                line = bar.terminal_line()
                # 500 done in 5 s: 100 steps/s, 1500 left: 15 s
                assert line.startswith("training") and " 500/2000 [" in line and " 25%" in line
                assert "100.0 steps/s" in line and "ETA 0:15" in line and "loss 0.002" in line
                # what the terminal shows is at most 0.1 s (10 steps) old
                shown = _visible(out.getvalue())
                assert int(shown.split("/")[0].split()[-1]) >= 490
    text = out.getvalue()
    assert "\n" not in text                                  # never a new line: one line, redrawn
    # redrawn at most every 0.1 s (20 s of work -> about 200 draws), not 2000 times
    assert 150 <= text.count("\r") <= 260
    assert _visible(text).strip() == "" and text.endswith("\r")   # cleared at the end


def test_terminal_line_is_cut_to_the_width_and_padded_over_a_longer_one():
    out, clock = FakeTTY(), Clock()
    bar = Progress(10, "x", stream=out, clock=clock, width=30, refresh=0)
    clock.tick(1)
    bar.update(status="a very long status text that does not fit")
    first = out.getvalue().split("\r")[-1]
    assert len(first) == 29
    clock.tick(1)
    bar.update(status="")
    # the shorter line is padded with spaces so that no tail of the longer one stays visible
    assert len(out.getvalue().split("\r")[-1]) == 29
    bar.close()


def test_plain_mode_writes_a_line_every_tenth():
    out, clock = io.StringIO(), Clock()
    with Progress(2000, "training", unit="steps", stream=out, clock=clock) as bar:
        assert not bar.tty
        for _ in range(2000):
            clock.tick(0.001)
            bar.update(status="loss 0.5")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10                                   # 200, 400, ..., 2000
    assert lines[0].startswith("training   200/2000 ( 10%)") and "ETA 0:02" in lines[0] and "loss 0.5" in lines[0]
    assert lines[-1].startswith("training  2000/2000 (100%)") and "ETA" not in lines[-1]
    assert "1000.0 steps/s" in lines[-1]


def test_plain_mode_also_every_ten_seconds():
    out, clock = io.StringIO(), Clock()
    with Progress(100, "slow", stream=out, clock=clock) as bar:
        for _ in range(100):
            clock.tick(2.5)                                   # 10 s = 4 units, 10% = 10 units
            bar.update()
    lines = out.getvalue().splitlines()
    # a line at each 10% mark (10 units) and whenever 10 s (4 units) passed since the last line
    done = [int(line.split()[1].split("/")[0]) for line in lines]
    assert all(b > a for a, b in zip(done, done[1:]))
    assert max(b - a for a, b in zip([0] + done, done)) <= 4 and done[-1] == 100
    assert {10, 20, 50, 90} <= set(done) and 25 <= len(lines) < 50


def test_unknown_total_first_news_then_periodic_then_the_last():
    out, clock = io.StringIO(), Clock()
    with Progress(None, "verify", stream=out, clock=clock) as bar:
        for i in range(30):
            clock.tick(1.0)
            bar(f"check {i}")                                 # the callback form
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("check 0")                      # at once
    assert lines[-1].endswith("check 29")                    # written at close
    assert 3 <= len(lines) <= 6                               # and about every 10 s in between


def test_disabled_writes_nothing_and_write_passes_lines_through():
    out, clock = FakeTTY(), Clock()
    with Progress(5, stream=out, clock=clock, enabled=False) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue() == ""
    out2, printed = FakeTTY(), io.StringIO()
    bar = Progress(5, "p", stream=out2, clock=clock, refresh=0)
    bar.update()
    bar.write("a result line", printed)
    assert printed.getvalue() == "a result line\n"
    # on the terminal: cleared before the line, drawn again after it
    assert out2.getvalue().count("\r") >= 3 and _visible(out2.getvalue()).startswith("p")
    bar.close()
    assert _visible(out2.getvalue()).strip() == ""


def test_is_terminal_and_durations(monkeypatch):
    assert not is_terminal(io.StringIO()) and not is_terminal(object())
    monkeypatch.setenv("TERM", "dumb")
    assert not is_terminal(FakeTTY())
    monkeypatch.setenv("TERM", "xterm")
    assert is_terminal(FakeTTY())
    assert format_duration(75.2) == "1:15" and format_duration(3725) == "1:02:05" and format_duration(0) == "0:00"
    assert format_duration(float("nan")) == "?"
    with pytest.raises(ValueError, match="`total`"):
        Progress(-1)
