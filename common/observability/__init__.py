"""What the system reports about itself: worker statistics snapshots and the broker's queues."""
