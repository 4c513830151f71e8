"""Emotion models on the device: the registry (safe flashing, roll-back, the active model) and the golden check."""
