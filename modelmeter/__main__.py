"""``python -m modelmeter …`` behaves exactly like the ``modelmeter`` command."""

import sys

from modelmeter.cli import main

sys.exit(main())
