"""The notification service: consumes job events, logs them, calls the job's webhook if it has one."""
