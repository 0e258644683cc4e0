"""ablab core library."""
