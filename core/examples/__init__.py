"""The project's shipped experiments, ablations and searches, as package data (setup.py maps
the repository's top-level folders here in the wheel; in a checkout they are read from there)."""
