"""Modal dialogs: choices and errors, prompt-style editing, the finish screen's bundle, wipe and destroy."""
