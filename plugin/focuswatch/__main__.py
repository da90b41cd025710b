"""``python -m focuswatch`` runs the command line."""
import sys

from focuswatch.cli import main

sys.exit(main())
