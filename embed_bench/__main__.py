import sys

from embed_bench.cli import main

sys.exit(main())
