"""Started by RunDir/Run as static/launcher/run.py: this directory, which holds the launcher
package and its dependencies, is then first on sys.path."""

import sys

from runimage.cli import main

sys.exit(main())
