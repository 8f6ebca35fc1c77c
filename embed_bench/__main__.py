import sys

from embed_bench.commands.cli import main

sys.exit(main())
