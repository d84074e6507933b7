"""What the API and the CLI ask a library to do: ingest, read, describe, delete, search.

Each module is one operation with the narrow parts it needs (catalog, blob store,
registry, pools), built by `imgdex.runtime.Runtime`; none reaches through another.
"""
