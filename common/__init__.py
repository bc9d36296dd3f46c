"""What every service shares: settings, AMQP topology and helpers, message schemas, storage."""
