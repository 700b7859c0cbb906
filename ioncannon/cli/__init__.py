"""Command-line entry points: the wizard, headless run, status, resume, stop, doctor, bundle, wipe, destroy."""
