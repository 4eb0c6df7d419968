"""`python -m fpsmodel server|client`: the game without the testbed."""

from fpsmodel.cli import main

raise SystemExit(main())
