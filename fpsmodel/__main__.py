"""`python -m fpsmodel server|client|clockd`: the game without the testbed (clockd: the host
clock a player machine measures itself against, fpsmodel/hostclock.py)."""

from fpsmodel.cli import main

raise SystemExit(main())
