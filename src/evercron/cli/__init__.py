"""The `evercron` command line."""
