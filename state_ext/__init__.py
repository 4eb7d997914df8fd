"""state-ext: Meltano pipeline state on every backend, natively and safely."""

APP_NAME = "state_extension"
__version__ = "0.1.0"
