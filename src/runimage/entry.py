"""Started by RunDir/Run as static/launcher/run.py: this directory, which holds the launcher
package and its dependencies, is then first on sys.path."""

import os
import sys

from runimage.cli import main

status = main()

# main() has stopped and unmounted everything it started: end without the interpreter's
# teardown of every module and object, which takes milliseconds of each run.
for stream in (sys.stdout, sys.stderr):
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):
        # A closed pipe or stream: what is left unwritten has no reader.
        pass
os._exit(status)
