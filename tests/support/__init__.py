"""Real services for the integration tests: a private vhost, an S3 server, the services as processes."""
