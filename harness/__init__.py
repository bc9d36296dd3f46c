"""Starting the system and its services for the tests, the benchmark and the load tools: a private
virtual host or RabbitMQ node (or cluster), a private SeaweedFS, the API, workers and notifier as
processes, and a webhook receiver. Product code never imports it."""
