"""The HTTP API (FastAPI). Routes parse requests and delegate to videopipe services (`videopipe.library`,
`videopipe.uploads`, `videopipe.auth`); `videopipe serve` runs it."""
