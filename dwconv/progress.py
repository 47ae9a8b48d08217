"""Progress of long work (simulations, synthesis seeds, profiling) on stderr.

On a terminal a tqdm bar with the rate and the time left; elsewhere (a log, a pipe, CI)
one plain line per step, so logs stay readable; nothing at all when quiet.  Library calls
take ``progress=None`` (silent) or a ``Progress``; the CLI makes one per command.
"""

import sys

__all__ = ["Progress", "progress_for", "say"]


class Progress:
    """Steps of one piece of work.

    Parameters
    ----------
    total : int
        Number of steps.
    what : str
        What the work is (the bar's label, the lines' prefix).
    mode : "auto", "bar", "lines" or "off"
        "auto": a bar when ``stream`` is a terminal, else lines.
    stream : file, default sys.stderr

    Members
    -------
    step(label) : finish one step, named ``label``.
    note(text) : a line of its own that does not break the bar.
    close() : end the bar (also on leaving a ``with`` block).
    """

    def __init__(self, total, what, *, mode="auto", stream=None):
        if mode not in ("auto", "bar", "lines", "off"):
            raise ValueError(f"mode must be auto, bar, lines or off, not {mode!r}")
        self.stream = sys.stderr if stream is None else stream
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode, self.total, self.what, self.done = mode, total, what, 0
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm
            # few, long steps: draw each one
            self._bar = tqdm(total=total, desc=what, file=self.stream, leave=False,
                             dynamic_ncols=True, mininterval=0, miniters=1)

    def step(self, label=""):
        self.done += 1
        if self.mode == "lines":
            print(f"dwconv: {self.what}: [{self.done}/{self.total}] {label}".rstrip(),
                  file=self.stream, flush=True)
        elif self._bar is not None:
            self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(1)

    def note(self, text):
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(f"dwconv: {text}", file=self.stream)
        else:
            print(f"dwconv: {text}", file=self.stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_for(factory, total, what):
    """A Progress from ``factory`` (a callable(total, what), e.g. ``functools.partial(
    Progress, mode="lines")``), or a silent one when ``factory`` is None."""
    if factory is None:
        return Progress(total, what, mode="off")
    return factory(total, what)


def say(progress, text):
    """``progress.note(text)`` when there is a Progress."""
    if progress is not None:
        progress.note(text)
