"""Item pipelines: the protocol, the runner, and the pipelines shipped with the engine.

Name shipped ones in the settings (``pipelines = ["validate", "jsonl"]``), your
own by import path (``"pipelines.mine:Mine"``), or let ``crawl -o FILE`` pick an
exporter by FILE's extension; see docs/pipelines.md. The shipped ones live
inside the ``crawler`` package, so a project's own ``pipelines`` package never
shadows them.
"""

from ._csv import CsvExporter as CsvExporter
from ._json import JsonArrayExporter as JsonArrayExporter
from ._jsonl import JsonLinesExporter as JsonLinesExporter
from ._runner import BUILTIN_PIPELINES as BUILTIN_PIPELINES
from ._runner import FEED_EXTENSIONS as FEED_EXTENSIONS
from ._runner import DropItem as DropItem
from ._runner import Feed as Feed
from ._runner import Pipeline as Pipeline
from ._runner import PipelineConfigError as PipelineConfigError
from ._runner import PipelineRunner as PipelineRunner
from ._runner import feed_exporter_for as feed_exporter_for
from ._runner import load_pipeline as load_pipeline
from ._runner import load_pipelines as load_pipelines
from ._sqlite import SqliteExporter as SqliteExporter
from ._validate import ValidatePipeline as ValidatePipeline

__all__ = [
    "BUILTIN_PIPELINES",
    "FEED_EXTENSIONS",
    "CsvExporter",
    "DropItem",
    "Feed",
    "JsonArrayExporter",
    "JsonLinesExporter",
    "Pipeline",
    "PipelineConfigError",
    "PipelineRunner",
    "SqliteExporter",
    "ValidatePipeline",
    "feed_exporter_for",
    "load_pipeline",
    "load_pipelines",
]
