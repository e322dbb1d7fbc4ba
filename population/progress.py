"""A progress bar for each phase of a population job, from Spark's own status tracker.

Each phase runs its Spark jobs under a job group; a background thread polls the tracker for the tasks of that
group's stages and advances a rich progress bar (tasks done / tasks known), so a user watching a long job sees it
move. When the console is not a terminal, each phase prints one line when it ends instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class JobProgress:
    def __init__(self, spark: SparkSession, console: Console, *, poll_seconds: float = 0.25) -> None:
        self.sc, self.console, self.poll = spark.sparkContext, console, poll_seconds
        self._count = 0

    def tasks(self, group: str) -> tuple[int, int]:
        """(completed, known) tasks of the stages that ran or run in `group`'s jobs so far. A stage whose data is
        already computed (cached, or an earlier job's shuffle) is skipped by Spark and never counted."""
        tracker = self.sc.statusTracker()
        done = total = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            if job is None:
                continue
            for stage_id in job.stageIds:
                stage = tracker.getStageInfo(stage_id)
                if stage is not None and (stage.numActiveTasks or stage.numCompletedTasks or stage.numFailedTasks):
                    done += stage.numCompletedTasks
                    total += stage.numTasks
        return done, total

    @contextmanager
    def phase(self, description: str) -> Iterator[None]:
        """Run the body's Spark jobs under a job group shown as one bar."""
        self._count += 1
        group = f"cds-onnx-population-{id(self)}-{self._count}"
        self.sc.setJobGroup(group, description)
        started = time.monotonic()
        stop = threading.Event()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("tasks"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task(description, total=None)

            def poll() -> None:
                while not stop.wait(self.poll):
                    done, total = self.tasks(group)
                    if total:
                        bar.update(task, completed=done, total=total)

            watcher = threading.Thread(target=poll, name="population-progress", daemon=True)
            watcher.start()
            try:
                yield
            finally:
                stop.set()
                watcher.join()
                done, total = self.tasks(group)
                bar.update(task, completed=done, total=max(total, done))
                self.sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        if not self.console.is_terminal:
            self.console.print(f"{description}: {done} tasks in {time.monotonic() - started:.1f} s")
