"""The schema, as an ordered list of migrations.

The database records how many have been applied in `PRAGMA user_version`; opening a database
applies the missing ones in one transaction. Never edit a released migration: append a new one.

Conventions: ids are UUID strings; times are INTEGER microseconds since the epoch (UTC), 0 when
unset, so that every sortable column is NOT NULL and keyset comparisons never meet NULL; enums
are stored by KFP name (e.g. 'ARCHIVED') as KFP filters compare names. Every sortable column has
an index ending in the id, the keyset tie-breaker, prefixed by the list's scope column if any.
"""

MIGRATIONS: list[str] = [
    # 1: experiments and pipelines
    """
    CREATE TABLE experiments (
        experiment_id       TEXT PRIMARY KEY,
        display_name        TEXT NOT NULL UNIQUE,
        description         TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        storage_state       TEXT NOT NULL,
        last_run_created_at INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX experiments_by_created_at ON experiments (created_at, experiment_id);
    CREATE INDEX experiments_by_display_name ON experiments (display_name, experiment_id);

    CREATE TABLE pipelines (
        pipeline_id  TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        description  TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX pipelines_by_created_at ON pipelines (created_at, pipeline_id);
    CREATE INDEX pipelines_by_name ON pipelines (name, pipeline_id);
    CREATE INDEX pipelines_by_display_name ON pipelines (display_name, pipeline_id);

    CREATE TABLE pipeline_versions (
        pipeline_version_id TEXT PRIMARY KEY,
        pipeline_id         TEXT NOT NULL REFERENCES pipelines (pipeline_id),
        name                TEXT NOT NULL,
        display_name        TEXT NOT NULL,
        description         TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        code_source_url     TEXT NOT NULL,
        pipeline_spec       TEXT NOT NULL,
        UNIQUE (pipeline_id, name)
    );
    CREATE INDEX pipeline_versions_by_created_at
        ON pipeline_versions (pipeline_id, created_at, pipeline_version_id);
    CREATE INDEX pipeline_versions_by_name
        ON pipeline_versions (pipeline_id, name, pipeline_version_id);
    CREATE INDEX pipeline_versions_by_display_name
        ON pipeline_versions (pipeline_id, display_name, pipeline_version_id);
    CREATE INDEX pipeline_versions_by_id ON pipeline_versions (pipeline_id, pipeline_version_id);
    """,
]
