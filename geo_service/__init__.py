"""Open map service of the human rights cities and territories movement."""

__version__ = "0.1.0"
