"""`python -m videopipe` runs the command line."""

from videopipe.cli import main

main()
