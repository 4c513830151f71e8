"""Emotion models on the device: the registry (safe flashing, roll-back, the active model), the checks a
candidate passes first (``checks``: the golden faces among them), and the running service's hot pick-up (``watcher``)."""
