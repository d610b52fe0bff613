"""Resumable crawls: a job directory holding the frontier, the seen set and checkpoints.

``crawl NAME --job DIR`` keeps everything a crawl needs to go on after a stop or
a crash in DIR; ``crawl status DIR`` reads it without touching it.
"""

from ._job import Job as Job
from ._job import JobError as JobError
from ._status import JobStatusError as JobStatusError
from ._status import job_status as job_status

__all__ = ["Job", "JobError", "JobStatusError", "job_status"]
