import sys

from qualia.cli.main import main

sys.exit(main())
