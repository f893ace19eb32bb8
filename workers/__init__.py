"""Celery app and thin tasks that call videopipe's pipeline stages.

Not built yet: it lands with the jobs/pipeline issue. Kept as a package now so the distribution layout
is fixed.
"""
