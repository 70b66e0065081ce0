"""Names fixed by docs/reference.md (the interface reference) that several tests check."""

SPEC_FAMILIES = frozenset(
    {
        "automationd_runs_total",
        "automationd_attempts_total",
        "automationd_run_duration_seconds",
        "automationd_schedule_lateness_seconds",
        "automationd_queue_depth",
        "automationd_workers_busy",
        "automationd_workers_max",
        "automationd_dlq_size",
        "automationd_ratelimit_tokens",
        "automationd_ratelimit_wait_seconds",
        "automationd_http_responses_total",
        "automationd_breaker_state",
        "automationd_events_published_total",
        "automationd_jobs",
        "automationd_build_info",
    }
)
