"""The SQLite catalog's schema, as its numbered migrations (`migrations`): the DDL of
each version, in SQLite's own spelling. With `imgdex.catalog.sqlite` (the connection and
SQL fragments) the only place SQLite-only constructs may appear (a test checks).

A migration is history: once released it is never edited, so a later one that rebuilds
a table (SQLite cannot alter a CHECK constraint) spells the whole table out again.
"""

from __future__ import annotations

from imgdex.catalog import facts, keyword
from imgdex.catalog.dialect import Dialect, Migration
from imgdex.catalog.sqlite_changes import DUPLICATES_REVISION, FACTS_CHANGES

__all__ = ["migrations"]

# The schema that catalogs before numbered migrations had (`meta.schema_version` = 2).
# Numbering continues from there, so that version 2 names the same schema in both, and
# every statement is idempotent: an older catalog gets what it lacks, as it always did.
_BASELINE = (
    """CREATE TABLE IF NOT EXISTS images (
    sha256       TEXT PRIMARY KEY,           -- first 32 hex chars of the SHA-256
    sha256_full  TEXT NOT NULL,              -- all 64, to detect 128-bit collisions
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    file_size    INTEGER NOT NULL,
    format       TEXT NOT NULL,
    filename     TEXT NOT NULL,              -- name of the original inside its directory
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    source       TEXT,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    error        TEXT,
    is_deleted   INTEGER NOT NULL DEFAULT 0,
    deleted_at   DATETIME
)""",
    """CREATE TABLE IF NOT EXISTS descriptions (
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,
    content      TEXT NOT NULL,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (image_sha256, method)
)""",
    # AUTOINCREMENT: an id is a label in a vector index and must never be reused.
    """CREATE TABLE IF NOT EXISTS vector_entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- the label in the vector index
    image_sha256  TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method        TEXT NOT NULL,                      -- 'image' or a description method
    model         TEXT NOT NULL,
    model_version TEXT NOT NULL,
    index_name    TEXT NOT NULL,
    created_at    DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (image_sha256, method, index_name)
)""",
    """CREATE TABLE IF NOT EXISTS plugin_state (
    name       TEXT PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    updated_at DATETIME NOT NULL DEFAULT (datetime('now'))
)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('embed_image', 'embed_text', 'describe')),
    target       TEXT NOT NULL,                      -- index name, or describer method
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,                      -- 'image' or a description method
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_run_at  REAL NOT NULL DEFAULT 0,            -- unix time; back-off after failures
    error        TEXT,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (kind, target, image_sha256, method)
)""",
    # Which index of a model family answers searches: 'active' (the one that does),
    # 'building' (a new model version filling up behind the active one) or 'retired'
    # (replaced, kept on disk until an admin removes it).
    """CREATE TABLE IF NOT EXISTS index_roles (
    name       TEXT PRIMARY KEY,
    family     TEXT NOT NULL,
    plugin     TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('active', 'building', 'retired')),
    settings   TEXT NOT NULL DEFAULT '{}',           -- the plugin section that built it
    updated_at DATETIME NOT NULL DEFAULT (datetime('now'))
)""",
    "CREATE INDEX IF NOT EXISTS idx_images_created ON images(created_at)",
    "CREATE INDEX IF NOT EXISTS idx_images_source ON images(source)",
    "CREATE INDEX IF NOT EXISTS idx_images_status ON images(status)",
    "CREATE INDEX IF NOT EXISTS idx_images_deleted ON images(is_deleted)",
    "CREATE INDEX IF NOT EXISTS idx_desc_method ON descriptions(method)",
    "CREATE INDEX IF NOT EXISTS idx_vector_index ON vector_entries(index_name, id)",
    "CREATE INDEX IF NOT EXISTS idx_vector_sha256 ON vector_entries(image_sha256)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_claim ON jobs(kind, target, state, next_run_at)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_image ON jobs(image_sha256)",
)

_ADD_ORIGINAL_NAME = "ALTER TABLE images ADD COLUMN original_name TEXT"

# Users, sessions, API keys and the audit log (`auth.mode: users`), plus who created
# each image and description.
_ACCESS = (
    """CREATE TABLE IF NOT EXISTS users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,                      -- argon2id, never the password
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    DATETIME NOT NULL DEFAULT (datetime('now'))
)""",
    """CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT PRIMARY KEY,                    -- sha256 of the cookie value
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   REAL NOT NULL,                       -- unix times
    last_seen_at REAL NOT NULL,
    expires_at   REAL NOT NULL,
    client       TEXT
)""",
    """CREATE TABLE IF NOT EXISTS api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,                -- sha256 of the key, never the key
    scopes       TEXT NOT NULL,                       -- comma-separated
    created_at   REAL NOT NULL,
    last_used_at REAL,
    expires_at   REAL,
    revoked_at   REAL
)""",
    """CREATE TABLE IF NOT EXISTS audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    actor    TEXT,                                    -- username, 'admin-token' or NULL
    action   TEXT NOT NULL,
    target   TEXT,
    client   TEXT,
    detail   TEXT
)""",
    # Share links of albums: the token's SHA-256 only; album_id is the albums table's id
    # (no foreign key: albums arrive in their own migration).
    """CREATE TABLE IF NOT EXISTS shares (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    album_id      TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    password_hash TEXT,                               -- argon2id, when the link has one
    created_by    TEXT,
    created_at    REAL NOT NULL,
    expires_at    REAL,
    revoked_at    REAL
)""",
    "CREATE INDEX IF NOT EXISTS idx_shares_album ON shares(album_id)",
    "CREATE INDEX IF NOT EXISTS idx_sessions_user ON sessions(user_id)",
    "CREATE INDEX IF NOT EXISTS idx_api_keys_user ON api_keys(user_id)",
    "ALTER TABLE images ADD COLUMN created_by TEXT",
    "ALTER TABLE descriptions ADD COLUMN created_by TEXT",
)
# Organising a library: photo metadata, favourites and ratings on `images`; tags; albums.
# `taken_local` is `taken_at`'s wall-clock part (``YYYY-MM-DDTHH:MM:SS``): what filters
# and sorting compare, since most photos carry no UTC offset. `meta_read` is 0 until the
# file's metadata has been read (the backfill of older images looks for it).
_ORGANISE = (
    *(
        f"ALTER TABLE images ADD COLUMN {column}"
        for column in (
            "taken_at TEXT",
            "taken_local TEXT",
            "camera_make TEXT",
            "camera_model TEXT",
            "camera_lens TEXT",
            "gps_lat REAL",
            "gps_lon REAL",
            "gps_alt REAL",
            "exif TEXT",
            "favorite INTEGER NOT NULL DEFAULT 0",
            "rating INTEGER NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5)",
            "meta_read INTEGER NOT NULL DEFAULT 0",
        )
    ),
    # The list's orders, live images first: a page is read off the index, no sort.
    *(
        f"CREATE INDEX IF NOT EXISTS idx_images_list_{column} "
        f"ON images(is_deleted, {column}, sha256)"
        for column in ("created_at", "taken_local", "file_size", "rating")
    ),
    # Oldest taken first, undated last (`SqliteDialect.order_nulls_last`).
    "CREATE INDEX IF NOT EXISTS idx_images_list_taken_asc "
    "ON images(is_deleted, taken_local IS NULL, taken_local, sha256)",
    "CREATE INDEX IF NOT EXISTS idx_images_favorite ON images(favorite)",
    "CREATE INDEX IF NOT EXISTS idx_images_gps ON images(gps_lat, gps_lon)",
    "CREATE INDEX IF NOT EXISTS idx_images_meta_read ON images(meta_read)",
    # One row per (image, tag): a person's tag wins over a model's (source 'user').
    """CREATE TABLE IF NOT EXISTS image_tags (
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    tag          TEXT NOT NULL,                      -- normalised (imgdex.tags.normalise)
    source       TEXT NOT NULL,                      -- 'user' or the describer's method
    confidence   REAL,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (image_sha256, tag)
)""",
    "CREATE INDEX IF NOT EXISTS idx_tags_tag ON image_tags(tag)",
    """CREATE TABLE IF NOT EXISTS albums (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    description TEXT,
    cover       TEXT REFERENCES images(sha256) ON DELETE SET NULL,
    smart       TEXT,                                -- JSON {"query"?, "filters"?}
    created_at  DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at  DATETIME NOT NULL DEFAULT (datetime('now'))
)""",
    """CREATE TABLE IF NOT EXISTS album_images (
    album_id     INTEGER NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    added_at     DATETIME NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (album_id, image_sha256)
)""",
    "CREATE INDEX IF NOT EXISTS idx_album_images_image ON album_images(image_sha256)",
)

# The keyword index (imgdex.catalog.keyword): documents keyed by (image, field), their
# prepared text in an FTS5 table under the same id. unicode61 splits words and folds
# case and accents; CJK text arrives as bigrams (prepared in Python).
_KEYWORD_INDEX = (
    """CREATE TABLE IF NOT EXISTS keyword_docs (
    id           INTEGER PRIMARY KEY,
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    field        TEXT NOT NULL,                     -- d:<method>, tags or filename
    UNIQUE (image_sha256, field)
)""",
    "CREATE VIRTUAL TABLE IF NOT EXISTS keyword_fts USING fts5("
    "body, tokenize = 'unicode61 remove_diacritics 2')",
    # Document counts per term, to leave out words too common to rank by.
    "CREATE VIRTUAL TABLE IF NOT EXISTS keyword_vocab USING fts5vocab(keyword_fts, 'row')",
    # Whatever removes a document (an image's hard delete cascades) removes its text.
    "CREATE TRIGGER IF NOT EXISTS keyword_docs_gone AFTER DELETE ON keyword_docs "
    "BEGIN DELETE FROM keyword_fts WHERE rowid = old.id; END",
)


# Near-duplicates: a job kind that compares an image's vector with its neighbours, the
# pairs it found (a < b, one row per index) and which images each index has checked.
# SQLite cannot change a CHECK constraint in place: the jobs table is rebuilt.
_DUPLICATES = (
    """CREATE TABLE jobs_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL CHECK (kind IN ('embed_image', 'embed_text', 'describe',
                                              'find_duplicates')),
    target       TEXT NOT NULL,                      -- index name, or describer method
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    method       TEXT NOT NULL,                      -- 'image' or a description method
    state        TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_run_at  REAL NOT NULL DEFAULT 0,            -- unix time; back-off after failures
    error        TEXT,
    created_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at   DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (kind, target, image_sha256, method)
)""",
    "INSERT INTO jobs_new SELECT * FROM jobs",
    "DROP TABLE jobs",
    "ALTER TABLE jobs_new RENAME TO jobs",
    "CREATE INDEX IF NOT EXISTS idx_jobs_claim ON jobs(kind, target, state, next_run_at)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_image ON jobs(image_sha256)",
    """CREATE TABLE IF NOT EXISTS duplicate_pairs (
    image_a    TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    image_b    TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    index_name TEXT NOT NULL,
    score      REAL NOT NULL,                       -- similarity in that index
    PRIMARY KEY (image_a, image_b, index_name),
    CHECK (image_a < image_b)
)""",
    "CREATE INDEX IF NOT EXISTS idx_duplicates_b ON duplicate_pairs(image_b)",
    "CREATE INDEX IF NOT EXISTS idx_duplicates_score ON duplicate_pairs(score)",
    """CREATE TABLE IF NOT EXISTS duplicate_checks (
    image_sha256 TEXT NOT NULL REFERENCES images(sha256) ON DELETE CASCADE,
    index_name   TEXT NOT NULL,
    PRIMARY KEY (image_sha256, index_name)
)""",
)

# Filters that use indexes (imgdex.catalog.facts): the camera dictionary, GPS unit
# vectors, and indexes that lead with `is_deleted` so that a count of live matches is
# read off one index. The single-column `is_deleted` index goes: without statistics
# SQLite took it for every live-images query, scanning the whole table.
_FAST_FILTERS = (
    """CREATE TABLE IF NOT EXISTS cameras (
    id    INTEGER PRIMARY KEY,
    make  TEXT NOT NULL,                             -- case-folded, '' when none
    model TEXT NOT NULL,
    UNIQUE (make, model)
)""",
    "ALTER TABLE images ADD COLUMN camera_id INTEGER REFERENCES cameras(id)",
    *(f"ALTER TABLE images ADD COLUMN gps_{axis} REAL" for axis in "xyz"),
    "CREATE INDEX IF NOT EXISTS idx_images_camera ON images(is_deleted, camera_id)",
    # Covers the near filter: the latitude range, then longitude and the exact chord
    # checked inside the index.
    "CREATE INDEX IF NOT EXISTS idx_images_place "
    "ON images(is_deleted, gps_lat, gps_lon, gps_x, gps_y, gps_z)",
    "DROP INDEX IF EXISTS idx_images_gps",
    "CREATE INDEX IF NOT EXISTS idx_images_live_favorite ON images(is_deleted, favorite)",
    "DROP INDEX IF EXISTS idx_images_favorite",
    "DROP INDEX IF EXISTS idx_images_deleted",
    "CREATE INDEX IF NOT EXISTS idx_images_trash ON images(deleted_at) WHERE is_deleted = 1",
)


# The duplicates listing reads the pairs above a threshold: from one covering index, not
# the table (the score-only index it replaces needed a table look-up per pair).
_DUPLICATE_SCORES = (
    "CREATE INDEX IF NOT EXISTS idx_duplicate_pairs_score "
    "ON duplicate_pairs(score, image_a, image_b)",
    "DROP INDEX IF EXISTS idx_duplicates_score",
)


def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    return (
        Migration(2, "baseline", _BASELINE),
        # `meta` held only the schema version, which `schema_version` records now.
        Migration(3, "version moves to schema_version", ("DROP TABLE IF EXISTS meta",)),
        Migration(4, "images remember their uploaded name", (_ADD_ORIGINAL_NAME,)),
        Migration(5, "users, sessions, api keys, audit log", _ACCESS),
        Migration(6, "photo metadata, ratings, tags and albums", _ORGANISE),
        Migration(
            7,
            "keyword index and near-duplicates",
            _KEYWORD_INDEX + _DUPLICATES,
            keyword.backfill(dialect),
        ),
        Migration(8, "indexed camera and place filters", _FAST_FILTERS, facts.backfill(dialect)),
        Migration(9, "duplicate pairs indexed by score", _DUPLICATE_SCORES),
        Migration(10, "a log of what filters match", FACTS_CHANGES),
        Migration(11, "a revision of the duplicate pairs", DUPLICATES_REVISION),
    )
