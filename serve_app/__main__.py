"""``python -m serve_app`` runs the command line."""

import sys

from serve_app.cli import main

sys.exit(main())
