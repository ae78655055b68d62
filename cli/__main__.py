"""`python -m cli`: the same as the `leadscore` console script."""

from cli import main

main()
