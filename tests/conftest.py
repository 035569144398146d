"""Suite-wide settings: hypothesis runs derandomized so every run checks the same cases."""

from hypothesis import settings

settings.register_profile("evercron", derandomize=True, print_blob=True)
settings.load_profile("evercron")
