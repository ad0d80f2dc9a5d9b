"""``python -m pacodec``: the same entry point as the ``pacodec`` command."""

from pacodec.cli import main

main()
