"""``python -m refdet`` is the same as the ``refdet`` console script."""
import sys

from refdet.cli import main

sys.exit(main())
