"""Fusion heads trained on the emocache feature cache."""
