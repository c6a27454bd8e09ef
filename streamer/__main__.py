"""``python -m streamer`` = the ``streamer`` command."""
import sys

from streamer.cli import main

sys.exit(main())
