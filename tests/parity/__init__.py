"""Parity of jukelite's Jukebox importer against the original Jukebox code (JUKEBOX_SRC)."""
