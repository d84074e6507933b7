"""Background work: the worker loop (`worker`) and what it does per job kind (`handlers`)."""
