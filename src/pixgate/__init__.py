"""pixgate: a self-hosted image-generation API platform."""

__version__ = "0.1.0"
