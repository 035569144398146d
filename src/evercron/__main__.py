"""`python -m evercron` is the `evercron` command."""

from evercron.cli.main import main

main()
