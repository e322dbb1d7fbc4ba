"""The job's output folder, written through Hadoop's file system so that `--out` may be local, HDFS, S3 or DBFS.

Large outputs are written by the executors (Parquet, and NDJSON written by one task from the persisted scores and
renamed to a plain `RiskAssessment.ndjson`); small ones (summary.json/html/png) by the driver. A folder that already
holds other files is never written into: a job only replaces the outputs of an earlier job (`--overwrite`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from population.sources import hadoop_path

SCORES = "scores.parquet"
REJECTED = "rejected.ndjson"
SUMMARY_JSON, SUMMARY_HTML, SUMMARY_PNG = "summary.json", "summary.html", "summary.png"
RESOURCE_FILES = ("RiskAssessment.ndjson", "Observation.ndjson")
OUTPUT_NAMES = frozenset({SCORES, REJECTED, SUMMARY_JSON, SUMMARY_HTML, SUMMARY_PNG, *RESOURCE_FILES})
_TMP_PREFIX = "_tmp-"


class OutputError(ValueError):
    """The output folder cannot be used."""


def output_problem(uri: str, names: list[str], is_dir: bool, overwrite: bool) -> str | None:
    """Why an existing `--out` cannot be written (None when it can): a file, a folder holding other files, or the
    outputs of an earlier job without --overwrite."""
    if not is_dir:
        return f"--out {uri} is a file; give a folder (it is created if absent)"
    foreign = sorted(n for n in names if _own_name(n) not in OUTPUT_NAMES and not n.startswith(_TMP_PREFIX))
    if foreign:
        return f"--out {uri} already holds other files ({', '.join(foreign[:5])}); give an empty or new folder"
    if names and not overwrite:
        return (f"--out {uri} holds the outputs of an earlier job ({', '.join(sorted(names)[:5])}); pass --overwrite "
                "to replace them, or give a new folder")
    return None


def _own_name(name: str) -> str:
    """The output a name belongs to: Hadoop's local file system keeps a checksum `.<name>.crc` beside a file."""
    return name[1:-4] if name.startswith(".") and name.endswith(".crc") else name


class OutputFolder:
    def __init__(self, spark: SparkSession, uri: str, *, overwrite: bool = False) -> None:
        self.spark, self.uri = spark, uri.rstrip("/")
        self.fs, self.root = hadoop_path(spark, self.uri)
        self.fs.setWriteChecksum(False)  # no .crc files beside the driver's small outputs
        if self.fs.exists(self.root):
            is_dir = self.fs.getFileStatus(self.root).isDirectory()
            names = [s.getPath().getName() for s in self.fs.listStatus(self.root)] if is_dir else []
            problem = output_problem(uri, names, is_dir, overwrite)
            if problem:
                raise OutputError(problem)
            for name in names:
                self.fs.delete(self._path(name), True)
        else:
            self.fs.mkdirs(self.root)

    def _path(self, name: str):  # type: ignore[no-untyped-def]
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        return jvm.org.apache.hadoop.fs.Path(self.root, name)

    def uri_of(self, name: str) -> str:
        return self._path(name).toString()

    def write_bytes(self, name: str, data: bytes) -> None:
        stream = self.fs.create(self._path(name), True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def write_parquet(self, frame: DataFrame, name: str) -> None:
        frame.write.mode("overwrite").parquet(self.uri_of(name))

    def write_lines(self, frame: DataFrame, name: str) -> None:
        """A one-string-column frame as one text file `name`, a line per row (written by a single task: persist the
        frame first, or its whole lineage runs in that task)."""
        tmp = _TMP_PREFIX + name
        frame.coalesce(1).write.mode("overwrite").text(self.uri_of(tmp))
        parts = [s.getPath() for s in self.fs.listStatus(self._path(tmp)) if s.getPath().getName().startswith("part-")]
        target = self._path(name)
        if parts:
            if not self.fs.rename(parts[0], target):
                raise OutputError(f"could not move {parts[0].toString()} to {target.toString()}")
            self.fs.delete(self._path(f".{name}.crc"), False)  # the local file system's checksum, moved along
        else:
            self.fs.create(target, True).close()
        self.fs.delete(self._path(tmp), True)
