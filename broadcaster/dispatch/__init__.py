"""Getting approved content out: planning, the dispatcher (queue, worker loop, outcomes), retry, rate
limits, pause/resume/cancel, recall, correction and relay follow-up."""
