"""`python -m gamebed`: the same as the `gamebed` command."""

from gamebed.cli import main

raise SystemExit(main())
