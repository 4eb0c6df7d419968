"""gamebed's core: the command, the experiment spec, the sweep, the run manifest and the
door to subprocesses (no privileges to import).

`hostside/`, `vm/` and `analysis/` import this package; it imports none of them,
except where the command (gamebed/cli/) lazily loads the job it was asked for.
"""
