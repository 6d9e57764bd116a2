"""`python -m edgert` is the `edgert` command."""
import sys

from .cli import main

sys.exit(main())
