import sys

from runimage.cli import main

sys.exit(main())
