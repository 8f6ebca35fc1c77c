import sys

from reports.cli import main

sys.exit(main(prog="python -m reports"))
