"""What changed in a SQLite catalog, kept by triggers in the writing transaction: the
change logs behind what the server keeps between requests (migrations 10 and 11, listed
in `imgdex.catalog.sqlite_schema`).

Triggers, not the Python that writes, so that every writer counts, in any process: the
kept filter sets (`imgdex.filter_sets`) and near-duplicate groups
(`imgdex.ops.duplicate_groups`) are valid while their numbers stay the same.
"""

from __future__ import annotations

__all__ = ["DUPLICATES_REVISION", "FACTS_CHANGES"]

# What a filter can depend on, as a log of changes: SQLite appends the image a write
# touched in the transaction of the write (triggers, so that every writer, in any process,
# counts; NULL when any image's matches may change: an album's rule). The last row's
# number is the *facts revision*: the sets of labels a filter allows kept between
# searches (`imgdex.filter_sets`) are valid at one revision, and brought forward through
# the images changed since. The log keeps the last `_FACTS_LOG` changes.
_FILTERED_COLUMNS = (
    "taken_local, camera_id, source, favorite, rating, gps_lat, gps_lon, gps_x, gps_y, "
    "gps_z, format, is_deleted"
)
_FACTS_LOG = 4096


def _log(image: str) -> str:
    return f"BEGIN INSERT INTO facts_changes (image) VALUES ({image}); END"


FACTS_CHANGES = (
    """CREATE TABLE IF NOT EXISTS facts_changes (
    rev   INTEGER PRIMARY KEY AUTOINCREMENT,
    image TEXT                                      -- NULL: any image's matches
)""",
    "CREATE TRIGGER IF NOT EXISTS facts_changes_trim AFTER INSERT ON facts_changes "
    f"BEGIN DELETE FROM facts_changes WHERE rev <= NEW.rev - {_FACTS_LOG}; END",
    f"CREATE TRIGGER IF NOT EXISTS facts_image_new AFTER INSERT ON images {_log('NEW.sha256')}",
    f"CREATE TRIGGER IF NOT EXISTS facts_image_gone AFTER DELETE ON images {_log('OLD.sha256')}",
    "CREATE TRIGGER IF NOT EXISTS facts_image_changed "
    f"AFTER UPDATE OF {_FILTERED_COLUMNS} ON images {_log('NEW.sha256')}",
    *(
        f"CREATE TRIGGER IF NOT EXISTS facts_{table}_{event.lower()} AFTER {event} ON {table} "
        + _log(("OLD" if event == "DELETE" else "NEW") + ".image_sha256")
        for table in ("image_tags", "album_images")
        for event in ("INSERT", "DELETE", "UPDATE")
    ),
    # A smart album's rule is what the `album` filter matches (ids are never reused, but
    # a filter may name an album before it exists).
    f"CREATE TRIGGER IF NOT EXISTS facts_album_new AFTER INSERT ON albums {_log('NULL')}",
    "CREATE TRIGGER IF NOT EXISTS facts_album_rule AFTER UPDATE OF smart ON albums " + _log("NULL"),
    f"CREATE TRIGGER IF NOT EXISTS facts_album_gone AFTER DELETE ON albums {_log('NULL')}",
)


# A revision of what near-duplicate groups are made of, for the groups cached per
# threshold (imgdex.ops.duplicate_groups): the triggers bump it on every change to the
# pairs, and when an image with pairs goes to the trash or comes back, whichever process
# writes. A hard delete reaches the groups only through its pairs, whose cascade fires the
# pair trigger. The finder re-records a pair seen from its other image with the same score:
# that update changes nothing and bumps nothing.
DUPLICATES_REVISION = (
    """CREATE TABLE IF NOT EXISTS duplicates_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
)""",
    "INSERT INTO duplicates_revision (id, revision) VALUES (1, 0)",
    "CREATE TRIGGER IF NOT EXISTS duplicates_revision_pair_added AFTER INSERT ON duplicate_pairs "
    "BEGIN UPDATE duplicates_revision SET revision = revision + 1; END",
    "CREATE TRIGGER IF NOT EXISTS duplicates_revision_pair_changed "
    "AFTER UPDATE ON duplicate_pairs WHEN old.score IS NOT new.score "
    "OR old.image_a IS NOT new.image_a OR old.image_b IS NOT new.image_b "
    "OR old.index_name IS NOT new.index_name "
    "BEGIN UPDATE duplicates_revision SET revision = revision + 1; END",
    "CREATE TRIGGER IF NOT EXISTS duplicates_revision_pair_removed "
    "AFTER DELETE ON duplicate_pairs "
    "BEGIN UPDATE duplicates_revision SET revision = revision + 1; END",
    "CREATE TRIGGER IF NOT EXISTS duplicates_revision_trash AFTER UPDATE OF is_deleted ON images "
    "WHEN old.is_deleted IS NOT new.is_deleted AND EXISTS (SELECT 1 FROM duplicate_pairs "
    "WHERE image_a = new.sha256 OR image_b = new.sha256) "
    "BEGIN UPDATE duplicates_revision SET revision = revision + 1; END",
)
