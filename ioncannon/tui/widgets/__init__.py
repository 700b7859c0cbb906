"""Reusable widgets: progress panel, loss sparkline, image preview."""
