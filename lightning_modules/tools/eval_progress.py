"""A per-benchmark progress bar for ``eval-all``: videos done, frames per second, time left (rich).

A 480p ViT-S/8 DAVIS run on CPU takes hours; the bar advances after every video by its frame count, so the
rate is frames/s and the ETA is frame-weighted (videos differ in length by 3x).
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class FramesPerSecond(ProgressColumn):
    """Measured frames per second of the task (blank until the first video is done)."""

    def render(self, task: Task) -> Text:
        """The column's cell for ``task``."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.2f} frames/s")


@contextmanager
def benchmark_progress(name: str, videos: Sequence, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(num_frames)``, to be called after each video of ``videos``; a no-op if not enabled."""
    if not enabled:
        yield lambda frames: None
        return
    total_frames = sum(len(v) for v in videos)
    columns = (
        TextColumn(f"{name}"),
        BarColumn(),
        TextColumn("{task.fields[done]}/{task.fields[videos]} videos"),
        FramesPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task(name, total=max(1, total_frames), done=0, videos=len(videos))

        def advance(frames: int) -> None:
            bar.update(task, advance=frames, done=bar.tasks[task].fields["done"] + 1)

        yield advance
