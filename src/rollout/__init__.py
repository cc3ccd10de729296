"""Progressive rollout of gRPC, one service (or one method) at a time: step the flags' gRPC share up on a schedule,
check the analysis at each step, halt or roll back on failed checks, record every decision and every flag change.

    model.py        a rollout, its thresholds (with their documented defaults) and its states
    store.py        rollouts, their event timeline, the flag audit log and controller leases, in the platform's
                    database (SQLite in the data directory, or DATABASE_URL)
    flag_writers.py setting a share in flags.yaml or on an Unleash server, returning what changed (for the audit)
    audit.py        who changed which flag when, old -> new, why
    evidence.py     one interface for the numbers a check needs; from Prometheus (PROMETHEUS_URL) or from the
                    services' own /metrics plus the canary store
    analysis.py     the four checks: parity, errors, latency, resilience
    prom.py         a small client for Prometheus' HTTP query API
    controller.py   the reconcile step (read state, query, decide, persist, write flags + audit) and its loop
    actions.py      what a person does: start, pause, resume, promote, abort

The CLI (`fxplat rollout ...`, `fxplat migration status`), the migration report (fxplat/migration_status.py) and the
status page's charts (fxplat/status_series.py) sit above this package.
"""
