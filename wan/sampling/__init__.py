"""Flow-matching schedules, samplers, guidance and context windows."""
