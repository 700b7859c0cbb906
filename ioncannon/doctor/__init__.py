"""The doctor: torch-free checks of what the person brings (photos, the identifier), for both doors and the engine."""
