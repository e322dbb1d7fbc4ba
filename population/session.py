"""The Spark session a population job runs in: local mode on this machine by default, any cluster by master URL.

Local mode binds the driver to 127.0.0.1 and runs without the web UI, so a job on a laptop opens no port beyond
loopback. Python workers run the interpreter that runs the job (the project's environment), unless PYSPARK_PYTHON
says otherwise. On a cluster the master, the executors' Python environment and the rest come from spark-submit or
the platform (docs/population.md).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from pyspark.sql import SparkSession

APP_NAME = "cds-onnx population score"
LOG4J = Path(__file__).with_name("log4j2.properties")


def is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[") or master.startswith("local-cluster[")


def build_session(master: str | None = "local[2]", *, shuffle_partitions: int | None = None,
                  extra: dict[str, str] | None = None) -> SparkSession:
    """A SparkSession for the job. `master` None: the one spark-submit (or the platform) configured."""
    if master is not None and is_local(master):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only, and no warning about the host name
    builder = SparkSession.builder.appName(APP_NAME)
    if master is not None:
        builder = builder.master(master)
    conf = {
        "spark.ui.showConsoleProgress": "false",  # the job shows its own progress bar
        "spark.log.level": "ERROR",
        "spark.python.worker.reuse": "true",  # one model repository per Python worker, reused across tasks
    }
    if master is not None and is_local(master):
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                     "spark.ui.enabled": "false"})
        if LOG4J.is_file():  # errors only on the console, from the JVM's first line on (not once the session is up)
            conf["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile={LOG4J}"
    if shuffle_partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    conf.update(extra or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():  # pyspark warns about pandas versions it is not tested with; no pandas API is used
        warnings.simplefilter("ignore", FutureWarning)
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
