"""`python -m edgeauth` is the `edgeauth` command."""

from edgeauth.cli import main

main()
