"""What the demo, the tests and the benchmarks share: synthetic media with known content (`media`: lectures with
slides and narration, camera footage with cuts, fixed cameras with visitors) and throw-away PostgreSQL databases
(`databases`). Not used by the service itself."""
