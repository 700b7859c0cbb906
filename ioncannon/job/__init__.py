"""The job's contract shared by CLI, TUI and runner: spec, paths, state, events, lock, client API; no torch."""
