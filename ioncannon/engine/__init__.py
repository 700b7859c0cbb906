"""The engine: pure Python, torch and diffusers; it never imports the TUI."""
