"""Finding and reading an export's files through Hadoop's file system, so any path Spark reads works (local, HDFS,
S3, ABFS, DBFS): the NDJSON files of a folder, and their lines with file name and line number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark import RDD
from pyspark.sql import SparkSession

from population.ndjson import is_ndjson


class ExportError(ValueError):
    """The input is not a readable Bulk Data export folder."""


@dataclass(frozen=True)
class Export:
    """The files of an export folder: NDJSON ones (read) and any others (named in the summary, not read)."""

    root: str
    files: tuple[tuple[str, str], ...]  # (name shown in reports, full URI)
    ignored: tuple[str, ...]


def hadoop_path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    """(FileSystem, Path) for a URI or local path."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def list_export(spark: SparkSession, uri: str) -> Export:
    """The NDJSON files (`*.ndjson`, `*.ndjson.gz`) directly in the export folder, in name order."""
    fs, path = hadoop_path(spark, uri)
    if not fs.exists(path):
        raise ExportError(f"{uri} does not exist; give --input the folder a FHIR Bulk Data $export was saved to")
    if not fs.getFileStatus(path).isDirectory():
        raise ExportError(f"{uri} is a file; give --input the folder that holds the export's NDJSON files")
    files: list[tuple[str, str]] = []
    ignored: list[str] = []
    for status in sorted(fs.listStatus(path), key=lambda s: s.getPath().getName()):
        name = status.getPath().getName()
        if name.startswith((".", "_")):
            continue  # hidden and bookkeeping files (.crc, _SUCCESS)
        if status.isDirectory() or not is_ndjson(name):
            ignored.append(name + ("/" if status.isDirectory() else ""))
        else:
            files.append((name, status.getPath().toString()))
    if not files:
        shown = f" (found: {', '.join(ignored[:5])})" if ignored else ""
        raise ExportError(f"{uri} holds no .ndjson or .ndjson.gz files{shown}; give --input the folder of a FHIR Bulk "
                          "Data export (Patient.ndjson, Observation.ndjson, ...)")
    return Export(uri, tuple(files), tuple(ignored))


def read_lines(spark: SparkSession, export: Export) -> RDD[tuple[str, int, str]]:
    """(file name, line number from 1, text) for every line of every file. A file is read as one partition when it
    fits in one split (gzip files always), so numbering costs no extra pass; larger files get a counting pass."""
    sc = spark.sparkContext
    parts = []
    for name, uri in export.files:
        lines = sc.textFile(uri, minPartitions=1)
        parts.append(lines.zipWithIndex().map(lambda pair, name=name: (name, pair[1] + 1, pair[0])))
    return sc.union(parts)
