"""The upload API: accepts images and operations, queues jobs, reports their status."""
