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
    # 2: runs, their tasks and task logs. A run's pipeline spec is a snapshot shared by every
    # run of the same spec (keyed by its hash), so that 10^5 runs of one pipeline store it once.
    """
    CREATE TABLE pipeline_specs (
        spec_hash     TEXT PRIMARY KEY,
        pipeline_spec TEXT NOT NULL
    );

    CREATE TABLE runs (
        run_id              TEXT PRIMARY KEY,
        experiment_id       TEXT NOT NULL,
        display_name        TEXT NOT NULL,
        description         TEXT NOT NULL,
        storage_state       TEXT NOT NULL,
        pipeline_id         TEXT NOT NULL,
        pipeline_version_id TEXT NOT NULL,
        spec_hash           TEXT NOT NULL,
        parameters          TEXT NOT NULL,
        pipeline_root       TEXT NOT NULL,
        service_account     TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        scheduled_at        INTEGER NOT NULL,
        finished_at         INTEGER NOT NULL,
        state               TEXT NOT NULL,
        error               TEXT NOT NULL,
        recurring_run_id    TEXT NOT NULL,
        state_history       TEXT NOT NULL,
        artifacts           TEXT NOT NULL,
        output_artifacts    TEXT NOT NULL,
        revision            INTEGER NOT NULL
    );
    CREATE INDEX runs_by_created_at ON runs (created_at, run_id);
    CREATE INDEX runs_in_experiment_by_created_at ON runs (experiment_id, created_at, run_id);
    CREATE INDEX runs_by_scheduled_at ON runs (scheduled_at, run_id);
    CREATE INDEX runs_in_experiment_by_scheduled_at ON runs (experiment_id, scheduled_at, run_id);
    CREATE INDEX runs_by_finished_at ON runs (finished_at, run_id);
    CREATE INDEX runs_in_experiment_by_finished_at ON runs (experiment_id, finished_at, run_id);
    CREATE INDEX runs_by_display_name ON runs (display_name, run_id);
    CREATE INDEX runs_in_experiment_by_display_name ON runs (experiment_id, display_name, run_id);
    CREATE INDEX runs_in_experiment_by_run_id ON runs (experiment_id, run_id);
    CREATE INDEX runs_by_spec_hash ON runs (spec_hash);
    CREATE INDEX runs_by_state ON runs (state, created_at, run_id);

    CREATE TABLE tasks (
        run_id            TEXT NOT NULL,
        task_id           TEXT NOT NULL,
        display_name      TEXT NOT NULL,
        parent_task_id    TEXT NOT NULL,
        state             TEXT NOT NULL,
        create_time       INTEGER NOT NULL,
        start_time        INTEGER NOT NULL,
        end_time          INTEGER NOT NULL,
        image             TEXT NOT NULL,
        exit_code         INTEGER,
        error             TEXT NOT NULL,
        input_parameters  TEXT NOT NULL,
        output_parameters TEXT NOT NULL,
        output_artifacts  TEXT NOT NULL,
        state_history     TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id)
    ) WITHOUT ROWID;

    CREATE TABLE log_lines (
        sequence    INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL,
        task_id     TEXT NOT NULL,
        line_number INTEGER NOT NULL,
        time        INTEGER NOT NULL,
        text        TEXT NOT NULL
    );
    CREATE INDEX log_lines_by_run ON log_lines (run_id, sequence);
    CREATE INDEX log_lines_by_task ON log_lines (run_id, task_id, line_number);
    """,
    # 3: recurring runs, their backfill queues, and one run per (recurring run, tick).
    """
    CREATE TABLE recurring_runs (
        recurring_run_id    TEXT PRIMARY KEY,
        display_name        TEXT NOT NULL,
        description         TEXT NOT NULL,
        experiment_id       TEXT NOT NULL,
        pipeline_id         TEXT NOT NULL,
        pipeline_version_id TEXT NOT NULL,
        spec_hash           TEXT NOT NULL,
        parameters          TEXT NOT NULL,
        pipeline_root       TEXT NOT NULL,
        service_account     TEXT NOT NULL,
        max_concurrency     INTEGER NOT NULL,
        trigger             TEXT NOT NULL,
        status              TEXT NOT NULL,
        no_catchup          INTEGER NOT NULL,
        overlap_policy      TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        error               TEXT NOT NULL,
        artifacts           TEXT NOT NULL,
        watermark           INTEGER NOT NULL,
        ticks_handled       INTEGER NOT NULL,
        runs_created        INTEGER NOT NULL,
        ticks_skipped       TEXT NOT NULL,
        revision            INTEGER NOT NULL
    );
    CREATE INDEX recurring_runs_by_created_at ON recurring_runs (created_at, recurring_run_id);
    CREATE INDEX recurring_runs_in_experiment_by_created_at
        ON recurring_runs (experiment_id, created_at, recurring_run_id);
    CREATE INDEX recurring_runs_by_updated_at ON recurring_runs (updated_at, recurring_run_id);
    CREATE INDEX recurring_runs_in_experiment_by_updated_at
        ON recurring_runs (experiment_id, updated_at, recurring_run_id);
    CREATE INDEX recurring_runs_by_display_name ON recurring_runs (display_name, recurring_run_id);
    CREATE INDEX recurring_runs_in_experiment_by_display_name
        ON recurring_runs (experiment_id, display_name, recurring_run_id);
    CREATE INDEX recurring_runs_in_experiment_by_recurring_run_id ON recurring_runs (experiment_id, recurring_run_id);
    CREATE INDEX recurring_runs_by_status ON recurring_runs (status, created_at, recurring_run_id);

    -- Ticks waiting for a concurrency slot: caught up, backfilled or buffered by the overlap policy.
    CREATE TABLE tick_queue (
        recurring_run_id TEXT NOT NULL,
        scheduled_at     INTEGER NOT NULL,
        tick_index       INTEGER NOT NULL,
        kind             TEXT NOT NULL,
        PRIMARY KEY (recurring_run_id, scheduled_at)
    ) WITHOUT ROWID;

    -- Exactly once: a tick of a recurring run has at most one run.
    CREATE UNIQUE INDEX runs_by_tick ON runs (recurring_run_id, scheduled_at) WHERE recurring_run_id != '';
    CREATE INDEX runs_of_recurring_run ON runs (recurring_run_id, created_at, run_id);
    """,
    # 4: the event log; an experiment's last run time kept by a trigger (one statement less
    # per run created)
    """
    CREATE TABLE events (
        sequence         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
        time             INTEGER NOT NULL,
        type             TEXT NOT NULL,
        run_id           TEXT NOT NULL,
        recurring_run_id TEXT NOT NULL,
        experiment_id    TEXT NOT NULL,
        details          TEXT NOT NULL
    );
    CREATE INDEX events_by_time ON events (time);
    CREATE INDEX events_of_run ON events (run_id, sequence) WHERE run_id != '';
    CREATE INDEX events_of_recurring_run ON events (recurring_run_id, sequence) WHERE recurring_run_id != '';

    -- {parameter: {recurring_run_id, output_artifact, optional}}
    ALTER TABLE recurring_runs ADD COLUMN parameters_from TEXT NOT NULL DEFAULT '{}';

    CREATE TRIGGER runs_set_last_run_created_at AFTER INSERT ON runs BEGIN
        UPDATE experiments SET last_run_created_at = MAX(last_run_created_at, NEW.created_at)
        WHERE experiment_id = NEW.experiment_id;
    END;
    """,
    # 5: tasks of loops, the execution cache
    """
    ALTER TABLE tasks ADD COLUMN iteration_index INTEGER;
    ALTER TABLE tasks ADD COLUMN iteration_count INTEGER;
    ALTER TABLE tasks ADD COLUMN cached_from_run_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE tasks ADD COLUMN notes TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE tasks ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;

    -- A SUCCEEDED execution of a container task, by cache key, for the runs of pipelines of
    -- the same pipelineInfo.name (KFP's cache scope).
    CREATE TABLE execution_cache (
        pipeline_name TEXT NOT NULL,
        cache_key     TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        run_id        TEXT NOT NULL,
        task_id       TEXT NOT NULL,
        PRIMARY KEY (pipeline_name, cache_key, created_at, run_id, task_id)
    ) WITHOUT ROWID;
    CREATE INDEX execution_cache_of_run ON execution_cache (run_id);
    """,
    # 6: runs counted per (experiment, storage state, state), kept by triggers, so that the
    # total_size of ListRuns (every call, as KFP) sums a few rows instead of counting up to
    # every run (store/listing.py Counts). A group whose count reaches 0 is removed.
    """
    CREATE TABLE run_counts (
        experiment_id TEXT NOT NULL,
        storage_state TEXT NOT NULL,
        state         TEXT NOT NULL,
        runs          INTEGER NOT NULL,
        PRIMARY KEY (experiment_id, storage_state, state)
    ) WITHOUT ROWID;
    INSERT INTO run_counts (experiment_id, storage_state, state, runs)
        SELECT experiment_id, storage_state, state, COUNT(*) FROM runs GROUP BY experiment_id, storage_state, state;

    CREATE TRIGGER runs_count_insert AFTER INSERT ON runs BEGIN
        INSERT INTO run_counts (experiment_id, storage_state, state, runs)
            VALUES (NEW.experiment_id, NEW.storage_state, NEW.state, 1)
            ON CONFLICT (experiment_id, storage_state, state) DO UPDATE SET runs = runs + 1;
    END;
    CREATE TRIGGER runs_count_delete AFTER DELETE ON runs BEGIN
        UPDATE run_counts SET runs = runs - 1
            WHERE experiment_id = OLD.experiment_id AND storage_state = OLD.storage_state AND state = OLD.state;
        DELETE FROM run_counts
            WHERE experiment_id = OLD.experiment_id AND storage_state = OLD.storage_state AND state = OLD.state AND runs = 0;
    END;
    CREATE TRIGGER runs_count_update AFTER UPDATE OF experiment_id, storage_state, state ON runs
        WHEN OLD.experiment_id != NEW.experiment_id OR OLD.storage_state != NEW.storage_state OR OLD.state != NEW.state
    BEGIN
        UPDATE run_counts SET runs = runs - 1
            WHERE experiment_id = OLD.experiment_id AND storage_state = OLD.storage_state AND state = OLD.state;
        DELETE FROM run_counts
            WHERE experiment_id = OLD.experiment_id AND storage_state = OLD.storage_state AND state = OLD.state AND runs = 0;
        INSERT INTO run_counts (experiment_id, storage_state, state, runs)
            VALUES (NEW.experiment_id, NEW.storage_state, NEW.state, 1)
            ON CONFLICT (experiment_id, storage_state, state) DO UPDATE SET runs = runs + 1;
    END;
    """,
]
