"""Summaries of py-spy profiles (`--profile DIR`): where a measure's time went.

py-spy writes collapsed stacks ("frame;frame;... count" per line, the thread first).
`summarize` reports, for each `focus` frame (e.g. the storm's commit and its publishing),
the share of the samples it was on the stack for, then the functions under those frames
with their inclusive (on the stack) and self (at the top) shares.

`main_thread` keeps only the event loop's thread: with py-spy's `--idle`, that is a
wall-clock view of a cycle (time spent waiting included, as `select`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def _read(path: Path, main_thread: bool) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if main_thread and not frames[0].endswith("MainThread"):
            continue
        # Line numbers would split one function into many.
        frames = [_LINE.sub(")", f) for f in frames if not f.startswith("thread (")]
        stacks.append((frames, int(count)))
    return stacks


def summarize(path: Path, focus: list[str], *, main_thread: bool = False, top: int = 20) -> str:
    stacks = _read(path, main_thread)
    total = max(1, sum(n for _, n in stacks))
    out = [
        f"{path.name}: {total} samples{' of the main thread' if main_thread else ''}",
        "",
        "share of the samples with each of these on the stack:",
    ]
    for name in focus:
        n = sum(c for frames, c in stacks if any(name in frame for frame in frames))
        out.append(f"  {100 * n / total:5.1f}%  {name}")
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in stacks:
        start = next((i for i, frame in enumerate(frames) if any(x in frame for x in focus)), None)
        if start is None:
            continue
        for frame in dict.fromkeys(frames[start:]):
            inclusive[frame] += n
        own[frames[-1]] += n
    out += ["", "under them: inclusive / self share of all samples"]
    for frame, n in inclusive.most_common(top):
        out.append(f"  {100 * n / total:5.1f}% / {100 * own[frame] / total:5.1f}%  {frame}")
    return "\n".join(out) + "\n"
