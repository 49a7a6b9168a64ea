"""Writers turn a job's events into what the client asked for: one JSON body, or SSE."""
