"""``python -m deliver.cli``: the same as the ``sokures`` command."""

from deliver.cli.app import main

main()
