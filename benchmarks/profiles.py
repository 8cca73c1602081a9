"""Summaries of py-spy profiles (`--profile DIR`): where the samples of a measure went.

py-spy writes collapsed stacks ("frame;frame;... count" per line). `summarize` keeps the
stacks that pass through one of the `focus` frames (e.g. the storm's commit and publish)
and lists, for each focus and then for every function under them, the share of those
samples it was on the stack for (inclusive) and at the top of it (self).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def _frames(stack: str) -> list[str]:
    # "thread (123): MainThread" and line numbers would split one function into many.
    return [_LINE.sub(")", f) for f in stack.split(";") if not f.startswith("thread (")]


def summarize(path: Path, focus: list[str], top: int = 25) -> str:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((_frames(stack), int(count)))
    total = sum(n for _, n in stacks)
    kept = [(f, n) for f, n in stacks if any(x in frame for frame in f for x in focus)]
    inside = sum(n for _, n in kept)
    out = [
        f"{path.name}: {total} samples, {inside} under {', '.join(focus)} "
        f"({100 * inside / max(total, 1):.0f}%)",
        "",
        "share of those samples, by focus:",
    ]
    for name in focus:
        n = sum(c for f, c in kept if any(name in frame for frame in f))
        out.append(f"  {100 * n / max(inside, 1):5.1f}%  {name}")
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, n in kept:
        start = next(i for i, frame in enumerate(frames) if any(x in frame for x in focus))
        for frame in dict.fromkeys(frames[start:]):
            inclusive[frame] += n
        own[frames[-1]] += n
    out += ["", "inclusive (on the stack) / self (at the top), under the focus:"]
    scale = 100 / max(inside, 1)
    for frame, n in inclusive.most_common(top):
        out.append(f"  {n * scale:5.1f}% / {own[frame] * scale:5.1f}%  {frame}")
    return "\n".join(out) + "\n"
