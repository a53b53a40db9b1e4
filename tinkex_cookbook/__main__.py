"""``python -m tinkex_cookbook``: the ``tinkex-cookbook`` command, for environments without its script."""

from tinkex_cookbook.cli import main

main()
