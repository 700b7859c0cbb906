"""Base models: loading from a hub id, a folder or a single file; tiny random-weight builds for tests."""
