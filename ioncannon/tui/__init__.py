"""The keyboard wizard: a thin Textual client of the engine's files."""
