"""rental."""
