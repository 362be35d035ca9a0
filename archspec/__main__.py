"""`python -m archspec`: the same as the `archspec` command."""
from archspec.cli import main

raise SystemExit(main())
