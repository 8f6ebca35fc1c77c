import sys

from target_server.cli import main

sys.exit(main())
