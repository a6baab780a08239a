"""The flight log: what a run leaves behind and how it is read back. ``schema.py`` (topics, message types, frame
kinds, the header's format), ``recorder.py`` (in the daemon), ``writer.py`` (its writer process), ``reader.py``,
``replay.py`` (``pupper-replay``) and ``plots.py``."""
