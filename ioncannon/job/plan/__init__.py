"""The planning room: what job runs, decided once from the request and a plain-data box (no torch, no Textual)."""
