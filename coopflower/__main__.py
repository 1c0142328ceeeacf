import sys

from coopflower.cli import main

sys.exit(main())
