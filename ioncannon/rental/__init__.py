"""Tools for the rented box around a job: what it costs, the results bundle, download commands, wipe, destroy."""
