"""evercron: a cron job runner for Linux that never has to stop."""

__version__ = "0.1.0"
