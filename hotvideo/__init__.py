"""hotvideo: streaming scorer for Bilibili hot-list prediction (shared core: settings, contracts)."""

__version__ = "0.1.0"
