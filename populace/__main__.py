import sys

from populace.cli import main

sys.exit(main())
