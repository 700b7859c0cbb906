"""Several GPUs: the collectives a stage calls inside a process, and the launcher that runs one process per GPU."""
