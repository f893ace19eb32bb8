"""The version of the analysis document (``analysis.json``, ``GET /v1/videos/{id}/analysis``): raised when a
field changes meaning or goes away (adding one does not). Part of every job's settings hash."""

SCHEMA_VERSION = 1
