"""The photo doctor: formats, orientation, colour, junk, duplicates, crops; normalised copies only."""
