"""The HTTP API (FastAPI). Routes parse requests and delegate to videopipe services.

Not built yet: it lands with the REST API issue. Kept as a package now so the distribution layout is fixed.
"""
