"""The progress bar of a study run (rich, on stderr): one tick per step."""

from __future__ import annotations

from analysis.study.records import StepRecord


class Progress:
    """A bar of ``total`` ticks when ``enabled``; a failed step is printed under it with its message."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.console = Console(stderr=True)
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description:<36}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("study", total=total)

    def start(self, title: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=title)

    def done(self, record: StepRecord) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)
            if record.status != "ok":
                self.console.print(f"[red]✗[/red] {record.title}: {record.status} — {record.message.splitlines()[0] if record.message else ''}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description="done")
            self.bar.stop()
