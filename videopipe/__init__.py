"""videopipe: long videos in, chapters, events, transcripts and timestamped answers out.

The core library. It knows nothing of HTTP or Celery: `api/` and `workers/` call into it.
"""

__version__ = "0.1.0"
