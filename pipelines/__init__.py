"""Pipelines shipped with the engine: validation and the file exporters.

Name them in the settings (``pipelines = ["validate", "jsonl"]``) or let
``crawl -o FILE`` pick an exporter by FILE's extension; see docs/pipelines.md.
"""

from .csv_export import CsvExporter as CsvExporter
from .json_export import JsonArrayExporter as JsonArrayExporter
from .jsonl import JsonLinesExporter as JsonLinesExporter
from .sqlite import SqliteExporter as SqliteExporter
from .validate import ValidatePipeline as ValidatePipeline

__all__ = [
    "CsvExporter",
    "JsonArrayExporter",
    "JsonLinesExporter",
    "SqliteExporter",
    "ValidatePipeline",
]
