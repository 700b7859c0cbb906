"""Shipped assets: demo photos of a synthetic subject and the prompt pack."""
